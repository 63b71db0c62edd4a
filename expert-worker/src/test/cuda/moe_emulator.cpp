// Runs the kernels of src/main/cuda/moe_ffn.cu on the CPU, so their indexing, fragment layouts,
// pipeline and predication are tested on machines without a GPU (CudaKernelEmulationTest).
//
// Every CUDA thread of a block is a fiber (ucontext) on one OS thread; the scheduler resumes them in
// turn, and a fiber yields at __syncthreads and at the warp-collective instructions (ldmatrix,
// mma.sync), which complete when all 32 lanes of the warp have arrived. The PTX wrappers follow the
// PTX ISA's fragment layouts. cp.async copies are deferred until the issuing thread's
// cp.async.wait_group retires their group (--mode deferred: a read before the wait sees stale
// shared memory), or run at issue (--mode eager: an overwrite before all warps are done reading a
// stage shows up). Shared memory starts as 0xff (bf16 NaN) in every block; global reads and writes
// are checked against the buffers the launch was given.
//
// Usage: moe_emulator DIR deferred|eager. DIR holds what CudaKernelEmulationTest wrote:
//   plan.txt           "key value" lines: variant, fp8 (0 or 1: which kernels), threads, smem, experts,
//                      rows, hidden, intermediate, grid_gate_up, grid_down
//   slots_gate_up.bin  ExpertSlot[experts] of the gate/up launch, weights = the expert's index
//   slots_down.bin     ExpertSlot[experts] of the down launch, weights = the expert's index
//   x.bin              bf16 [rows, hidden]
//   w_gate_up_E.bin    bf16 [2 * intermediate, hidden], gate and up interleaved by 8 rows (fp8: the
//                      codes in the device layout, then 2 * intermediate f32 scales)
//   w_down_E.bin       bf16 [hidden, intermediate] (fp8: codes, then hidden f32 scales)
// and it writes y.bin, bf16 [rows, hidden].
// moe_emulator DIR decode writes DIR/decode.bin: for c = 0..255, the four bf16 values the kernels'
// fp8x4_to_bf16x4 makes of the word with bytes c, c+1, c+2, c+3 (mod 256), low byte first.

#define MOE_EMULATE 1

#include "fiber_grid.h"

namespace moe {
extern unsigned char moe_smem[];
}

namespace emu {

enum class Op { None, Ldsm, Mma };

struct Warp {
    Barrier barrier;
    Op op[32];
    uint32_t addr[32];
    uint32_t a[32][4];
    uint32_t b[32][2];
    float c[32][4];
    uint32_t out[32][4];
    float d[32][4];
};
static std::vector<Warp> warps;

static void same_op(const Warp& w, Op op, const char* name) {
    for (int l = 0; l < 32; l++) {
        if (w.op[l] != op) {
            die(std::string("warp diverged at ") + name);
        }
    }
}

static void run_copies(const std::vector<Copy>& copies) {
    for (const Copy& c : copies) {
        std::memcpy(moe::moe_smem + c.dst, c.src, c.bytes);
        std::memset(moe::moe_smem + c.dst + c.bytes, 0, 16 - c.bytes);
    }
}

}  // namespace emu

// ---- the built-ins and PTX wrappers moe_ffn.cu uses ----
namespace moe {

static void __syncthreads() {
    emu::arrive_and_wait(emu::block_barrier, [] {});
}

static uint32_t smem_u32(const void* p) {
    return static_cast<uint32_t>(static_cast<const unsigned char*>(p) - moe_smem);
}

static void cp_async_16(uint32_t dst, const void* src, int src_bytes) {
    emu::check_smem(dst, 16, 16, "cp.async destination");
    if (src_bytes != 0 && src_bytes != 16) {
        emu::die("cp.async src-size must be 0 or 16 here");
    }
    if (src_bytes > 0) {
        emu::check_global(src, src_bytes, "cp.async source");
    }
    emu::Copy c{dst, src, src_bytes};
    if (emu::eager_copies) {
        emu::run_copies({c});
    } else {
        emu::current->pending.push_back(c);
    }
}

static void cp_async_commit() {
    emu::current->groups.push_back(std::move(emu::current->pending));
    emu::current->pending.clear();
}

template <int N>
static void cp_async_wait() {
    auto& groups = emu::current->groups;
    while (groups.size() > static_cast<size_t>(N)) {
        emu::run_copies(groups.front());
        groups.pop_front();
    }
}

// ldmatrix .x4: lanes 8i..8i+7 give the row addresses of matrix i; thread t receives, in register i,
// elements (t/4, 2(t%4)) and (t/4, 2(t%4)+1) of matrix i, the lower column in the low half.
static void ldsm_x4(uint32_t (&r)[4], uint32_t addr) {
    unsigned tid = threadIdx.x;
    emu::Warp& w = emu::warps[tid / 32];
    int lane = tid % 32;
    w.op[lane] = emu::Op::Ldsm;
    w.addr[lane] = addr;
    emu::arrive_and_wait(w.barrier, [&w] {
        emu::same_op(w, emu::Op::Ldsm, "ldmatrix");
        for (int l = 0; l < 32; l++) {
            emu::check_smem(w.addr[l], 16, 16, "ldmatrix row");
        }
        for (int t = 0; t < 32; t++) {
            for (int i = 0; i < 4; i++) {
                const unsigned char* row = moe_smem + w.addr[8 * i + t / 4];
                uint16_t lo, hi;
                std::memcpy(&lo, row + 4 * (t % 4), 2);
                std::memcpy(&hi, row + 4 * (t % 4) + 2, 2);
                w.out[t][i] = lo | static_cast<uint32_t>(hi) << 16;
            }
        }
    });
    for (int i = 0; i < 4; i++) {
        r[i] = w.out[lane][i];
    }
    w.op[lane] = emu::Op::None;
}

// mma.sync.m16n8k16.row.col.f32.bf16.bf16.f32 with the PTX ISA fragment layouts (g = lane/4,
// q = lane%4): A a0 (g, 2q..2q+1), a1 (g+8, 2q..), a2 (g, 2q+8..), a3 (g+8, 2q+8..); B b0 (k 2q..2q+1,
// n g), b1 (k 2q+8..2q+9, n g); C/D c0,c1 (g, 2q..2q+1), c2,c3 (g+8, 2q..2q+1).
static void mma_bf16_16816(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
    unsigned tid = threadIdx.x;
    emu::Warp& w = emu::warps[tid / 32];
    int lane = tid % 32;
    w.op[lane] = emu::Op::Mma;
    for (int i = 0; i < 4; i++) {
        w.a[lane][i] = a[i];
        w.c[lane][i] = d[i];
    }
    w.b[lane][0] = b[0];
    w.b[lane][1] = b[1];
    emu::arrive_and_wait(w.barrier, [&w] {
        emu::same_op(w, emu::Op::Mma, "mma.sync");
        float A[16][16], B[16][8], C[16][8];
        for (int t = 0; t < 32; t++) {
            int g = t / 4, q = t % 4;
            auto lo = [](uint32_t v) { return emu::bf16_to_f32(static_cast<uint16_t>(v & 0xffff)); };
            auto hi = [](uint32_t v) { return emu::bf16_to_f32(static_cast<uint16_t>(v >> 16)); };
            A[g][2 * q] = lo(w.a[t][0]);
            A[g][2 * q + 1] = hi(w.a[t][0]);
            A[g + 8][2 * q] = lo(w.a[t][1]);
            A[g + 8][2 * q + 1] = hi(w.a[t][1]);
            A[g][2 * q + 8] = lo(w.a[t][2]);
            A[g][2 * q + 9] = hi(w.a[t][2]);
            A[g + 8][2 * q + 8] = lo(w.a[t][3]);
            A[g + 8][2 * q + 9] = hi(w.a[t][3]);
            B[2 * q][g] = lo(w.b[t][0]);
            B[2 * q + 1][g] = hi(w.b[t][0]);
            B[2 * q + 8][g] = lo(w.b[t][1]);
            B[2 * q + 9][g] = hi(w.b[t][1]);
            C[g][2 * q] = w.c[t][0];
            C[g][2 * q + 1] = w.c[t][1];
            C[g + 8][2 * q] = w.c[t][2];
            C[g + 8][2 * q + 1] = w.c[t][3];
        }
        for (int m = 0; m < 16; m++) {
            for (int n = 0; n < 8; n++) {
                float s = C[m][n];
                for (int k = 0; k < 16; k++) {
                    s += A[m][k] * B[k][n];
                }
                C[m][n] = s;
            }
        }
        for (int t = 0; t < 32; t++) {
            int g = t / 4, q = t % 4;
            w.d[t][0] = C[g][2 * q];
            w.d[t][1] = C[g][2 * q + 1];
            w.d[t][2] = C[g + 8][2 * q];
            w.d[t][3] = C[g + 8][2 * q + 1];
        }
    });
    for (int i = 0; i < 4; i++) {
        d[i] = w.d[lane][i];
    }
    w.op[lane] = emu::Op::None;
}

static uint32_t pack_bf16x2(float lo, float hi) {
    return emu::f32_to_bf16(lo) | static_cast<uint32_t>(emu::f32_to_bf16(hi)) << 16;
}

static void store_u32(uint16_t* p, uint32_t v) {
    if (reinterpret_cast<uintptr_t>(p) % 4 != 0) {
        emu::die("misaligned 4-byte store");
    }
    emu::check_global(p, 4, "bf16x2 store");
    std::memcpy(p, &v, 4);
}

static float silu(float g) {
    return g / (1.0f + std::exp(-g));
}

// ld.shared.u32: a plain per-thread read, so a read before the cp.async that fills it has retired
// sees the stale bytes (deferred mode).
static uint32_t lds_u32(uint32_t addr) {
    emu::check_smem(addr, 4, 4, "ld.shared.u32");
    uint32_t v;
    std::memcpy(&v, moe_smem + addr, 4);
    return v;
}

// fma.rn.bf16x2, lane by lane: the f32 fma of bf16 inputs is exact for the products the kernels form
// (a power of two times a value of 4 significant bits), so rounding it once to bf16 is the instruction's
// result; subnormal bf16 inputs widen to subnormal f32 exactly.
static uint32_t fma_bf16x2(uint32_t a, uint32_t b, uint32_t c) {
    uint32_t d = 0;
    for (int lane = 0; lane < 2; lane++) {
        auto half = [lane](uint32_t v) { return emu::bf16_to_f32(static_cast<uint16_t>(v >> (16 * lane))); };
        d |= static_cast<uint32_t>(emu::f32_to_bf16(std::fma(half(a), half(b), half(c)))) << (16 * lane);
    }
    return d;
}

static void ldg_f32x2(const float* p, float& lo, float& hi) {
    if (reinterpret_cast<uintptr_t>(p) % 8 != 0) {
        emu::die("misaligned 8-byte load");
    }
    emu::check_global(p, 8, "f32x2 scale load");
    std::memcpy(&lo, p, 4);
    std::memcpy(&hi, p + 1, 4);
}

}  // namespace moe

#include "../../main/cuda/moe_ffn.cu"

namespace moe {
__attribute__((aligned(128))) unsigned char moe_smem[emu::kSmemCapacity];
}

namespace emu {

static void reset_warps() {
    for (Warp& w : warps) {
        w.barrier = Barrier{32};
        for (int l = 0; l < 32; l++) {
            w.op[l] = Op::None;
        }
    }
}

// Runs `body` as a grid of `grid` blocks of `threads` threads.
static void launch(unsigned grid, unsigned threads, size_t smem, void (*body)()) {
    warps.assign((threads + 31) / 32, Warp());
    launch(grid, threads, smem, moe::moe_smem, body, reset_warps);
}

// Kernel arguments of the launch being run (the bodies below read them).
static const moe::ExpertSlot* arg_slots;
static int arg_num_slots;
static const uint16_t* arg_a;
static void* arg_c;
static int arg_n, arg_k;

template <class T, bool FP8>
static void gate_up_body() {
    moe::gate_up<T, FP8>(arg_slots, arg_num_slots, arg_a, static_cast<uint16_t*>(arg_c), arg_n, arg_k);
}

template <class T, bool FP8>
static void down_body() {
    moe::down<T, FP8>(arg_slots, arg_num_slots, arg_a, static_cast<uint16_t*>(arg_c), arg_n, arg_k);
}

template <class T, bool FP8>
static int run(std::map<std::string, long>& plan, const std::string& dir) {
    const long smem = FP8 ? T::FP8_SMEM_BYTES : T::SMEM_BYTES;
    if (plan["threads"] != T::THREADS || plan["smem"] != smem) {
        die("TileConfig in Java (threads " + std::to_string(plan["threads"]) + ", smem " + std::to_string(plan["smem"])
            + ") does not match moe_ffn.cu (threads " + std::to_string(T::THREADS) + ", smem "
            + std::to_string(smem) + (FP8 ? ", fp8" : "") + ")");
    }
    const int experts = static_cast<int>(plan["experts"]);
    const long rows = plan["rows"], hidden = plan["hidden"], inter = plan["intermediate"];
    std::vector<unsigned char> x = read_file(dir + "/x.bin");
    std::vector<std::vector<unsigned char>> wgu(experts), wdn(experts);
    for (int e = 0; e < experts; e++) {
        wgu[e] = read_file(dir + "/w_gate_up_" + std::to_string(e) + ".bin");
        wdn[e] = read_file(dir + "/w_down_" + std::to_string(e) + ".bin");
    }
    auto relocate = [&](std::vector<unsigned char> bytes, std::vector<std::vector<unsigned char>>& weights) {
        if (bytes.size() % sizeof(moe::ExpertSlot) != 0) {
            die("slot table of " + std::to_string(bytes.size()) + " bytes is not a whole number of slots");
        }
        auto* s = reinterpret_cast<moe::ExpertSlot*>(bytes.data());
        for (size_t i = 0; i < bytes.size() / sizeof(moe::ExpertSlot); i++) {
            if (s[i].weights >= weights.size()) {
                die("slot " + std::to_string(i) + " names expert " + std::to_string(s[i].weights));
            }
            s[i].weights = reinterpret_cast<uint64_t>(weights[s[i].weights].data());
        }
        return bytes;
    };
    std::vector<unsigned char> slots_gu = relocate(read_file(dir + "/slots_gate_up.bin"), wgu);
    std::vector<unsigned char> slots_dn = relocate(read_file(dir + "/slots_down.bin"), wdn);
    std::vector<uint16_t> act(rows * inter, 0xffff);
    std::vector<uint16_t> y(rows * hidden, 0xffff);  // bf16 NaN: rows the kernel misses show up

    regions.clear();
    regions.push_back({x.data(), x.size(), "x"});
    regions.push_back({reinterpret_cast<unsigned char*>(act.data()), act.size() * 2, "act"});
    for (int e = 0; e < experts; e++) {
        regions.push_back({wgu[e].data(), wgu[e].size(), "w_gate_up"});
    }
    arg_slots = reinterpret_cast<const moe::ExpertSlot*>(slots_gu.data());
    arg_num_slots = static_cast<int>(slots_gu.size() / sizeof(moe::ExpertSlot));
    arg_a = reinterpret_cast<const uint16_t*>(x.data());
    arg_c = act.data();
    arg_n = static_cast<int>(2 * inter);
    arg_k = static_cast<int>(hidden);
    launch(static_cast<unsigned>(plan["grid_gate_up"]), T::THREADS, smem, gate_up_body<T, FP8>);

    regions.clear();
    regions.push_back({reinterpret_cast<unsigned char*>(act.data()), act.size() * 2, "act"});
    regions.push_back({reinterpret_cast<unsigned char*>(y.data()), y.size() * 2, "y"});
    for (int e = 0; e < experts; e++) {
        regions.push_back({wdn[e].data(), wdn[e].size(), "w_down"});
    }
    arg_slots = reinterpret_cast<const moe::ExpertSlot*>(slots_dn.data());
    arg_num_slots = static_cast<int>(slots_dn.size() / sizeof(moe::ExpertSlot));
    arg_a = act.data();
    arg_c = y.data();
    arg_n = static_cast<int>(hidden);
    arg_k = static_cast<int>(inter);
    launch(static_cast<unsigned>(plan["grid_down"]), T::THREADS, smem, down_body<T, FP8>);

    std::ofstream out(dir + "/y.bin", std::ios::binary);
    out.write(reinterpret_cast<const char*>(y.data()), static_cast<std::streamsize>(y.size() * 2));
    return out ? 0 : 1;
}

template <class T>
static int run(std::map<std::string, long>& plan, const std::string& dir) {
    return plan["fp8"] != 0 ? run<T, true>(plan, dir) : run<T, false>(plan, dir);
}

static int decode(const std::string& dir) {
    std::vector<uint16_t> out;
    for (uint32_t c = 0; c < 256; c++) {
        uint32_t w = 0;
        for (uint32_t j = 0; j < 4; j++) {
            w |= ((c + j) & 0xffu) << (8 * j);
        }
        uint32_t lo, hi;
        moe::fp8x4_to_bf16x4(w, lo, hi);
        for (uint32_t v : {lo & 0xffffu, lo >> 16, hi & 0xffffu, hi >> 16}) {
            out.push_back(static_cast<uint16_t>(v));
        }
    }
    std::ofstream f(dir + "/decode.bin", std::ios::binary);
    f.write(reinterpret_cast<const char*>(out.data()), static_cast<std::streamsize>(out.size() * 2));
    return f ? 0 : 1;
}

}  // namespace emu

int main(int argc, char** argv) {
    if (argc == 3 && std::string(argv[2]) == "decode") {
        return emu::decode(argv[1]);
    }
    if (argc != 3 || (std::string(argv[2]) != "deferred" && std::string(argv[2]) != "eager")) {
        std::fprintf(stderr, "usage: moe_emulator DIR deferred|eager|decode\n");
        return 2;
    }
    std::string dir = argv[1];
    emu::eager_copies = std::string(argv[2]) == "eager";
    std::map<std::string, long> plan;
    std::ifstream in(dir + "/plan.txt");
    std::string key;
    std::string value;
    while (in >> key >> value) {
        plan[key] = key == "variant" ? 0 : std::stol(value);
        if (key == "variant") {
            plan["variant_" + value] = 1;
        }
    }
    if (plan.count("variant_128x256")) {
        return emu::run<moe::Tile128x256>(plan, dir);
    }
    if (plan.count("variant_128x128")) {
        return emu::run<moe::Tile128x128>(plan, dir);
    }
    if (plan.count("variant_64x128")) {
        return emu::run<moe::Tile64x128>(plan, dir);
    }
    std::fprintf(stderr, "moe_emulator: plan.txt names no known variant\n");
    return 2;
}
