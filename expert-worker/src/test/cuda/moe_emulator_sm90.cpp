// Runs the Hopper kernels of src/main/cuda/moe_ffn_sm90.cu on the CPU (CudaKernelEmulationTest), so
// their TMA coordinates, swizzle, wgmma descriptors, accumulator layout, mbarrier pipeline, persistent
// tile loop and epilogues are tested on machines without a GPU.
//
// Every CUDA thread is a fiber (fiber_grid.h). The PTX wrappers are emulated from the PTX ISA:
//  - mbarrier: pending arrivals and a transaction count per barrier; a phase completes when both reach
//    zero; try_wait.parity P succeeds once the current phase's parity differs from P;
//  - cp.async.bulk.tensor (TMA): the box is read from the emulated tensor map (rows past the matrix and
//    columns past its width read as zero) and written with the 128-byte swizzle, bits 4-6 of the shared
//    address XOR bits 7-9; --mode deferred lands a copy only when a thread waits on its barrier (a
//    read before the wait sees the 0xff fill), --mode eager lands it at issue (an overwrite of a stage
//    still being read shows up);
//  - wgmma.mma_async m64n128k16: operands read through the matrix descriptors (start, stride byte
//    offset, 128-byte swizzle mode) in the canonical K-major layout ((8, m), (8, 2)) : ((128 B, SBO),
//    (2 B, 16 B)), swizzled as TMA writes; queued at issue and run when wgmma.wait_group retires its
//    group, after the other fibers have had a turn; a TMA write into what a queued wgmma will read
//    (a stage released before the wait) stops the run; the accumulator fragment layout of the ISA.
// Shared memory starts at a window offset that is not 1024-aligned, as on a GPU with static shared
// memory, so the kernel's own alignment is exercised; TMA destinations must then be 1024-aligned.
//
// Usage: moe_emulator_sm90 DIR deferred|eager, DIR as for moe_emulator.cpp, plan.txt adding tiles_gate_up,
// tiles_down (the plans' tile counts), a_box_rows and b_box_rows (the tensor maps' box heights).

#define MOE_EMULATE 1

#include "fiber_grid.h"

namespace moe90 {
extern unsigned char moe90_smem[];
struct TensorMap;
}

namespace emu {

constexpr uint32_t kWindowOffset = 48;   // where the dynamic shared memory starts in the shared window

static unsigned char* smem_at(uint32_t addr, size_t n, size_t align, const char* what) {
    if (addr < kWindowOffset || addr % align != 0 || addr - kWindowOffset + n > smem_bytes) {
        die(std::string(what) + " at shared address " + std::to_string(addr) + " is misaligned or outside the "
            + std::to_string(smem_bytes) + " bytes of the launch");
    }
    return moe90::moe90_smem + (addr - kWindowOffset);
}

static uint32_t swizzle128(uint32_t addr) {
    return addr ^ (((addr >> 7) & 7) << 4);
}

// What the test's tensor maps hold here (the driver's encoding is opaque; only its meaning matters).
struct EmuMap {
    const uint16_t* base;
    long rows;
    long cols;
    int box_rows;
    int box_cols;
    uint64_t magic;
};
constexpr uint64_t kMapMagic = 0x544d41504d415053ull;
static_assert(sizeof(EmuMap) <= 128, "an emulated map fits a CUtensorMap");

struct TmaCopy {
    uint32_t dst;
    const EmuMap* map;
    int c0, c1;
};

struct MBar {
    int count = 0;
    int pending = 0;
    long tx = 0;
    unsigned phase = 0;
    std::vector<TmaCopy> in_flight;
};
static std::map<uint32_t, MBar> mbars;

// ---- wgmma ----
struct WgmmaOp {
    uint64_t desc_a, desc_b;
    float* d[128];
};

struct Warpgroup {
    Barrier barrier;
    uint64_t desc_a[128], desc_b[128];
    float* d[128];
    std::vector<WgmmaOp> uncommitted;
    std::deque<std::vector<WgmmaOp>> groups;
};
static std::vector<Warpgroup> warpgroups;

// The shared bytes an m64n128k16 reads: 8-row groups SBO apart, 64 rows of A and 128 of B.
static bool overlaps(uint64_t desc, int rows, uint32_t dst, size_t bytes) {
    const uint32_t start = static_cast<uint32_t>(desc & 0x3FFF) << 4;
    const uint32_t sbo = static_cast<uint32_t>((desc >> 32) & 0x3FFF) << 4;
    const uint32_t first = start & ~1023u;
    const uint32_t end = first + (rows / 8) * sbo;
    return first < dst + bytes && dst < end;
}

// A TMA write into shared memory a queued wgmma has not yet read: a stage released too early.
static void check_not_read_by_wgmma(uint32_t dst, size_t bytes) {
    for (const Warpgroup& w : warpgroups) {
        auto check = [&](const WgmmaOp& op) {
            if (overlaps(op.desc_a, 64, dst, bytes) || overlaps(op.desc_b, 128, dst, bytes)) {
                die("TMA overwrites shared memory a wgmma in flight has not read yet (stage released before wgmma.wait_group?)");
            }
        };
        for (const WgmmaOp& op : w.uncommitted) {
            check(op);
        }
        for (const auto& g : w.groups) {
            for (const WgmmaOp& op : g) {
                check(op);
            }
        }
    }
}

static MBar& mbar(uint32_t addr) {
    auto it = mbars.find(addr);
    if (it == mbars.end()) {
        die("mbarrier at " + std::to_string(addr) + " used before mbarrier.init");
    }
    return it->second;
}

static void try_complete(MBar& m) {
    if (m.pending == 0 && m.tx == 0) {
        m.phase++;
        m.pending = m.count;
        progress = true;
    }
}

static void land(MBar& m, const TmaCopy& c) {
    const EmuMap& map = *c.map;
    const size_t bytes = static_cast<size_t>(map.box_rows) * map.box_cols * 2;
    if (c.dst % 1024 != 0) {
        die("TMA destination " + std::to_string(c.dst) + " is not 1024-aligned: the 128-byte swizzle would not match the descriptors");
    }
    smem_at(c.dst, bytes, 1024, "TMA destination");
    for (const auto& [addr, other] : mbars) {
        if (addr >= c.dst && addr < c.dst + bytes) {
            die("TMA box overwrites the mbarrier at " + std::to_string(addr));
        }
    }
    check_not_read_by_wgmma(c.dst, bytes);
    for (int r = 0; r < map.box_rows; r++) {
        for (int e = 0; e < map.box_cols; e++) {
            const long gr = static_cast<long>(c.c1) + r;
            const long gk = static_cast<long>(c.c0) + e;
            uint16_t v = 0;
            if (gr >= 0 && gr < map.rows && gk >= 0 && gk < map.cols) {
                v = map.base[gr * map.cols + gk];
            }
            std::memcpy(smem_at(swizzle128(c.dst + r * map.box_cols * 2 + e * 2), 2, 2, "TMA element"), &v, 2);
        }
    }
    m.tx -= static_cast<long>(bytes);
    if (m.tx < 0) {
        die("TMA delivered more bytes than the barrier expected");
    }
    try_complete(m);
}

static void check_not_read_by_wgmma(uint32_t dst, size_t bytes);

static Warpgroup& my_warpgroup() {
    return warpgroups[threadIdx.x / 128];
}

// Element (i, k) of a K-major bf16 operand in the 128-byte swizzle, read through descriptor `desc`.
static float operand(uint64_t desc, int i, int k) {
    const uint32_t start = static_cast<uint32_t>(desc & 0x3FFF) << 4;
    const uint32_t sbo = static_cast<uint32_t>((desc >> 32) & 0x3FFF) << 4;
    const uint32_t base_offset = static_cast<uint32_t>((desc >> 49) & 7);
    const uint32_t mode = static_cast<uint32_t>(desc >> 62);
    if (mode != 1 || base_offset != 0) {
        die("descriptor is not a 128-byte-swizzle one with base offset 0");
    }
    const uint32_t pre = start + (i / 8) * sbo + (i % 8) * 128 + k * 2;
    uint16_t v;
    std::memcpy(&v, smem_at(swizzle128(pre), 2, 2, "wgmma operand"), 2);
    return bf16_to_f32(v);
}

static void execute(const WgmmaOp& op) {
    static float A[64][16], B[128][16], D[64][128];
    for (int i = 0; i < 64; i++) {
        for (int k = 0; k < 16; k++) {
            A[i][k] = operand(op.desc_a, i, k);
        }
    }
    for (int j = 0; j < 128; j++) {
        for (int k = 0; k < 16; k++) {
            B[j][k] = operand(op.desc_b, j, k);
        }
    }
    for (int t = 0; t < 128; t++) {
        for (int x = 0; x < 64; x++) {
            const int row = 16 * (t / 32) + (t % 32) / 4 + 8 * ((x % 4) / 2);
            const int col = 8 * (x / 4) + 2 * (t % 4) + x % 2;
            D[row][col] = op.d[t][x];
        }
    }
    for (int i = 0; i < 64; i++) {
        for (int j = 0; j < 128; j++) {
            float s = D[i][j];
            for (int k = 0; k < 16; k++) {
                s += A[i][k] * B[j][k];
            }
            D[i][j] = s;
        }
    }
    for (int t = 0; t < 128; t++) {
        for (int x = 0; x < 64; x++) {
            const int row = 16 * (t / 32) + (t % 32) / 4 + 8 * ((x % 4) / 2);
            const int col = 8 * (x / 4) + 2 * (t % 4) + x % 2;
            op.d[t][x] = D[row][col];
        }
    }
}

static void reset_block() {
    mbars.clear();
    for (Warpgroup& w : warpgroups) {
        w.barrier = Barrier{128};
        w.uncommitted.clear();
        w.groups.clear();
    }
}

}  // namespace emu

// ---- the built-ins and PTX wrappers moe_ffn_sm90.cu uses ----
namespace moe90 {

static void __syncthreads() {
    emu::arrive_and_wait(emu::block_barrier, [] {});
}

static uint32_t smem_u32(const void* p) {
    return static_cast<uint32_t>(static_cast<const unsigned char*>(p) - moe90_smem) + emu::kWindowOffset;
}

static void mbar_init(uint32_t bar, int count) {
    emu::smem_at(bar, 8, 8, "mbarrier");
    emu::MBar m;
    m.count = count;
    m.pending = count;
    emu::mbars[bar] = m;
}

static void fence_barrier_init() {}

static void mbar_wait(uint32_t bar, uint32_t parity) {
    for (;;) {
        emu::MBar& m = emu::mbar(bar);
        if ((m.phase & 1) != parity) {
            return;
        }
        if (!m.in_flight.empty()) {
            std::vector<emu::TmaCopy> copies = std::move(m.in_flight);
            m.in_flight.clear();
            for (const emu::TmaCopy& c : copies) {
                emu::land(m, c);
            }
            continue;
        }
        emu::yield();
    }
}

static void mbar_arrive(uint32_t bar) {
    emu::MBar& m = emu::mbar(bar);
    if (--m.pending < 0) {
        emu::die("more arrivals than the mbarrier's count");
    }
    emu::progress = true;
    emu::try_complete(m);
}

static void mbar_arrive_expect_tx(uint32_t bar, uint32_t bytes) {
    emu::mbar(bar).tx += bytes;
    mbar_arrive(bar);
}

static const emu::EmuMap* as_map(const TensorMap* map) {
    const auto* m = reinterpret_cast<const emu::EmuMap*>(map);
    emu::check_global(m, 128, "tensor map");
    if (reinterpret_cast<uintptr_t>(m) % 64 != 0 || m->magic != emu::kMapMagic) {
        emu::die("not a tensor map (misaligned, or the slot holds something else)");
    }
    return m;
}

static void tensormap_acquire(const TensorMap* map) {
    as_map(map);
}

static void tensormap_prefetch(const TensorMap* map) {
    as_map(map);
}

static void tma_load_2d(uint32_t dst, const TensorMap* map, int c0, int c1, uint32_t bar) {
    emu::TmaCopy c{dst, as_map(map), c0, c1};
    emu::MBar& m = emu::mbar(bar);
    if (emu::eager_copies) {
        emu::land(m, c);
    } else {
        m.in_flight.push_back(c);
    }
}

template <int N>
static void regs_dec() {}

template <int N>
static void regs_inc() {}

static void wgmma_fence() {}

static void fence_operands(float (&)[64]) {}

static void wgmma_m64n128k16(float (&d)[64], uint64_t desc_a, uint64_t desc_b) {
    emu::Warpgroup& w = emu::my_warpgroup();
    const int t = threadIdx.x % 128;
    w.desc_a[t] = desc_a;
    w.desc_b[t] = desc_b;
    w.d[t] = d;
    emu::arrive_and_wait(w.barrier, [&w] {
        emu::WgmmaOp op;
        op.desc_a = w.desc_a[0];
        op.desc_b = w.desc_b[0];
        for (int i = 0; i < 128; i++) {
            if (w.desc_a[i] != op.desc_a || w.desc_b[i] != op.desc_b) {
                emu::die("the threads of a warpgroup passed different wgmma descriptors");
            }
            op.d[i] = w.d[i];
        }
        w.uncommitted.push_back(op);
    });
}

static void wgmma_commit() {
    emu::Warpgroup& w = emu::my_warpgroup();
    emu::arrive_and_wait(w.barrier, [&w] {
        w.groups.push_back(std::move(w.uncommitted));
        w.uncommitted.clear();
    });
}

template <int N>
static void wgmma_wait() {
    emu::yield();   // the tensor cores take a while: the other warps (the producer) run meanwhile
    emu::Warpgroup& w = emu::my_warpgroup();
    emu::arrive_and_wait(w.barrier, [&w] {
        while (w.groups.size() > static_cast<size_t>(N)) {
            for (const emu::WgmmaOp& op : w.groups.front()) {
                emu::execute(op);
            }
            w.groups.pop_front();
        }
    });
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

}  // namespace moe90

#include "../../main/cuda/moe_ffn_sm90.cu"

namespace moe90 {
__attribute__((aligned(1024))) unsigned char moe90_smem[emu::kSmemCapacity];
}

namespace emu {

static const moe90::ExpertSlot* arg_slots;
static int arg_num_slots, arg_num_tiles;
static const moe90::TensorMap* arg_a_map;
static uint16_t* arg_out;
static int arg_n, arg_k;

template <class T, bool GATE_UP>
static void body() {
    moe90::run<T, GATE_UP>(arg_slots, arg_num_slots, arg_num_tiles, arg_a_map, arg_out, arg_n, arg_k);
}

struct alignas(64) MapStorage {
    unsigned char bytes[128];
};

static MapStorage make_map(const void* base, long rows, long cols, int box_rows) {
    MapStorage s{};
    EmuMap m{static_cast<const uint16_t*>(base), rows, cols, box_rows, moe90::BK, kMapMagic};
    std::memcpy(s.bytes, &m, sizeof m);
    return s;
}

template <class T>
static int run(std::map<std::string, long>& plan, const std::string& dir) {
    if (plan["threads"] != T::THREADS || plan["smem"] != T::SMEM_BYTES) {
        die("TileConfig in Java (threads " + std::to_string(plan["threads"]) + ", smem " + std::to_string(plan["smem"])
            + ") does not match moe_ffn_sm90.cu (threads " + std::to_string(T::THREADS) + ", smem "
            + std::to_string(T::SMEM_BYTES) + ")");
    }
    if (plan["a_box_rows"] != T::BM || plan["b_box_rows"] != moe90::B_BOX_ROWS) {
        die("the tensor maps' boxes (A " + std::to_string(plan["a_box_rows"]) + " rows, B " + std::to_string(plan["b_box_rows"])
            + ") are not what the kernel loads (A " + std::to_string(T::BM) + ", B " + std::to_string(moe90::B_BOX_ROWS) + ")");
    }
    const int experts = static_cast<int>(plan["experts"]);
    const long rows = plan["rows"], hidden = plan["hidden"], inter = plan["intermediate"];
    std::vector<unsigned char> x = read_file(dir + "/x.bin");
    std::vector<std::vector<unsigned char>> wgu(experts), wdn(experts);
    std::vector<MapStorage> maps_gu(experts), maps_dn(experts);
    for (int e = 0; e < experts; e++) {
        wgu[e] = read_file(dir + "/w_gate_up_" + std::to_string(e) + ".bin");
        wdn[e] = read_file(dir + "/w_down_" + std::to_string(e) + ".bin");
        maps_gu[e] = make_map(wgu[e].data(), 2 * inter, hidden, static_cast<int>(plan["b_box_rows"]));
        maps_dn[e] = make_map(wdn[e].data(), hidden, inter, static_cast<int>(plan["b_box_rows"]));
    }
    auto relocate = [&](std::vector<unsigned char> bytes, std::vector<MapStorage>& maps) {
        if (bytes.size() % sizeof(moe90::ExpertSlot) != 0) {
            die("slot table of " + std::to_string(bytes.size()) + " bytes is not a whole number of slots");
        }
        auto* s = reinterpret_cast<moe90::ExpertSlot*>(bytes.data());
        for (size_t i = 0; i < bytes.size() / sizeof(moe90::ExpertSlot); i++) {
            if (s[i].weights >= maps.size()) {
                die("slot " + std::to_string(i) + " names expert " + std::to_string(s[i].weights));
            }
            s[i].weights = reinterpret_cast<uint64_t>(maps[s[i].weights].bytes);
        }
        return bytes;
    };
    std::vector<unsigned char> slots_gu = relocate(read_file(dir + "/slots_gate_up.bin"), maps_gu);
    std::vector<unsigned char> slots_dn = relocate(read_file(dir + "/slots_down.bin"), maps_dn);
    std::vector<uint16_t> act(rows * inter, 0xffff);
    std::vector<uint16_t> y(rows * hidden, 0xffff);  // bf16 NaN: rows the kernel misses show up
    MapStorage x_map = make_map(x.data(), rows, hidden, static_cast<int>(plan["a_box_rows"]));
    MapStorage act_map = make_map(act.data(), rows, inter, static_cast<int>(plan["a_box_rows"]));
    warpgroups.assign(T::THREADS / 128, Warpgroup());

    regions.clear();
    regions.push_back({reinterpret_cast<unsigned char*>(act.data()), act.size() * 2, "act"});
    regions.push_back({x_map.bytes, 128, "x tensor map"});
    for (int e = 0; e < experts; e++) {
        regions.push_back({maps_gu[e].bytes, 128, "gate/up tensor map"});
    }
    arg_slots = reinterpret_cast<const moe90::ExpertSlot*>(slots_gu.data());
    arg_num_slots = static_cast<int>(slots_gu.size() / sizeof(moe90::ExpertSlot));
    arg_num_tiles = static_cast<int>(plan["tiles_gate_up"]);
    arg_a_map = reinterpret_cast<const moe90::TensorMap*>(x_map.bytes);
    arg_out = act.data();
    arg_n = static_cast<int>(2 * inter);
    arg_k = static_cast<int>(hidden);
    launch(static_cast<unsigned>(plan["grid_gate_up"]), T::THREADS, T::SMEM_BYTES, moe90::moe90_smem, body<T, true>,
           reset_block);

    regions.clear();
    regions.push_back({reinterpret_cast<unsigned char*>(y.data()), y.size() * 2, "y"});
    regions.push_back({act_map.bytes, 128, "act tensor map"});
    for (int e = 0; e < experts; e++) {
        regions.push_back({maps_dn[e].bytes, 128, "down tensor map"});
    }
    arg_slots = reinterpret_cast<const moe90::ExpertSlot*>(slots_dn.data());
    arg_num_slots = static_cast<int>(slots_dn.size() / sizeof(moe90::ExpertSlot));
    arg_num_tiles = static_cast<int>(plan["tiles_down"]);
    arg_a_map = reinterpret_cast<const moe90::TensorMap*>(act_map.bytes);
    arg_out = y.data();
    arg_n = static_cast<int>(hidden);
    arg_k = static_cast<int>(inter);
    launch(static_cast<unsigned>(plan["grid_down"]), T::THREADS, T::SMEM_BYTES, moe90::moe90_smem, body<T, false>,
           reset_block);

    std::ofstream out(dir + "/y.bin", std::ios::binary);
    out.write(reinterpret_cast<const char*>(y.data()), static_cast<std::streamsize>(y.size() * 2));
    return out ? 0 : 1;
}

}  // namespace emu

int main(int argc, char** argv) {
    if (argc == 2 && std::string(argv[1]) == "descriptors") {
        // The kernel's own descriptor arithmetic, for Sm90LayoutTest to compare with Sm90Layout.java:
        // "address ks descriptor" lines, descriptor in hex.
        for (uint32_t addr : {0u, 1024u, 8192u, 16384u + 1024u, 196608u - 1024u, 232448u - 1024u}) {
            for (int ks = 0; ks < moe90::BK / 16; ks++) {
                std::printf("%u %d %016llx\n", addr, ks,
                            static_cast<unsigned long long>(moe90::advance_k(moe90::smem_descriptor(addr), ks)));
            }
        }
        return 0;
    }
    if (argc != 3 || (std::string(argv[2]) != "deferred" && std::string(argv[2]) != "eager")) {
        std::fprintf(stderr, "usage: moe_emulator_sm90 DIR deferred|eager, or moe_emulator_sm90 descriptors\n");
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
    if (plan.count("variant_sm90_128x256")) {
        return emu::run<moe90::Tile128x256>(plan, dir);
    }
    if (plan.count("variant_sm90_128x128")) {
        return emu::run<moe90::Tile128x128>(plan, dir);
    }
    if (plan.count("variant_sm90_64x128")) {
        return emu::run<moe90::Tile64x128>(plan, dir);
    }
    std::fprintf(stderr, "moe_emulator_sm90: plan.txt names no known variant\n");
    return 2;
}
