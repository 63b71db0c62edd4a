// Runs the kernels of src/main/cuda/dense.cu on the CPU, so their indexing (block tables, slots,
// splits, GQA groups, rope pairs) is tested on machines without a GPU (DenseKernelEmulationTest).
//
// Every CUDA thread of a block is a fiber (ucontext) on one OS thread; the scheduler resumes them in
// turn and a fiber yields at __syncthreads, which completes when every thread of the block has
// arrived (a barrier some threads skip by returning is reported). The kernels use no warp-level
// instructions, so nothing else needs emulating. __shared__ arrays become function statics, shared by
// the fibers of the one block that runs at a time. Each buffer is followed by guard bytes that must
// be intact after the launches (a write past the end is reported).
//
// Usage: dense_emulator DIR. DIR/launch.txt lists, one per line:
//   buffer NAME BYTES              device memory, from DIR/NAME.bin when that file exists, else zeros
//   launch KERNEL GX GY GZ THREADS then its arguments, in order, one per line:
//   arg buf NAME | arg null | arg i32 V | arg i64 V | arg f32 V
// After every launch has run, each buffer is written to DIR/NAME.out.

#define DENSE_EMULATE 1

#include <ucontext.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>
#include <string>
#include <vector>

struct dim3 {
    unsigned x = 0, y = 0, z = 0;
};
static dim3 threadIdx, blockIdx, blockDim, gridDim;

#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static

struct __nv_bfloat16 {
    uint16_t bits;
};

static inline float __bfloat162float(__nv_bfloat16 b) {
    uint32_t u = (uint32_t) b.bits << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}

static inline __nv_bfloat16 __float2bfloat16_rn(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) {
        return {(uint16_t) ((u >> 16) | 0x40)};
    }
    u += 0x7fffu + ((u >> 16) & 1u);
    return {(uint16_t) (u >> 16)};
}

static inline float rsqrtf(float x) {
    return 1.f / std::sqrt(x);
}

static inline int min(int a, int b) {
    return a < b ? a : b;
}

namespace emu {

[[noreturn]] static void die(const std::string& why) {
    std::fprintf(stderr, "dense_emulator: %s (block %u,%u,%u, thread %u)\n", why.c_str(), blockIdx.x, blockIdx.y,
                 blockIdx.z, threadIdx.x);
    std::fflush(stderr);
    std::_Exit(2);  // no exit handlers: this may run on a fiber's stack
}

struct Fiber {
    ucontext_t ctx;
    std::vector<char> stack;
    unsigned tid = 0;
    bool done = false;
    bool at_barrier = false;
};

static ucontext_t scheduler;
static std::vector<Fiber> fibers;
static Fiber* current;
static std::function<void()> kernel_body;

static void fiber_main() {
    kernel_body();
    current->done = true;
    swapcontext(&current->ctx, &scheduler);
}

static void syncthreads() {
    current->at_barrier = true;
    swapcontext(&current->ctx, &scheduler);
}

// Runs one block to completion: rounds of resuming every live fiber until the next barrier or its end.
static void run_block(unsigned threads) {
    if (fibers.size() != threads) {
        fibers.assign(threads, Fiber());
        for (Fiber& f : fibers) {
            f.stack.resize(64 * 1024);  // allocated once per block size, reused by every block
        }
    }
    for (unsigned t = 0; t < threads; t++) {
        Fiber& f = fibers[t];
        f.tid = t;
        f.done = false;
        getcontext(&f.ctx);
        f.ctx.uc_stack.ss_sp = f.stack.data();
        f.ctx.uc_stack.ss_size = f.stack.size();
        f.ctx.uc_link = nullptr;
        makecontext(&f.ctx, fiber_main, 0);
    }
    while (true) {
        unsigned waiting = 0;
        unsigned finished = 0;
        for (Fiber& f : fibers) {
            if (f.done) {
                finished++;
                continue;
            }
            f.at_barrier = false;
            current = &f;
            threadIdx.x = f.tid;
            swapcontext(&scheduler, &f.ctx);
            if (f.done) {
                finished++;
            } else {
                waiting++;
            }
        }
        if (waiting == 0) {
            return;
        }
        if (finished > 0) {
            die("__syncthreads reached by " + std::to_string(waiting) + " threads while "
                + std::to_string(finished) + " have returned");
        }
    }
}

}  // namespace emu

#define __syncthreads() emu::syncthreads()

#include "../../main/cuda/dense.cu"

namespace emu {

constexpr size_t kGuard = 256;
constexpr unsigned char kGuardByte = 0xa5;

struct Buffer {
    std::vector<unsigned char> bytes;  // size + kGuard
    size_t size = 0;
};

struct Arg {
    std::string kind;
    std::string text;
};

static std::map<std::string, Buffer> buffers;

static void* ptr(const Arg& a) {
    if (a.kind == "null") {
        return nullptr;
    }
    if (a.kind != "buf") {
        die("argument '" + a.text + "' is not a buffer");
    }
    auto it = buffers.find(a.text);
    if (it == buffers.end()) {
        die("no buffer " + a.text);
    }
    return it->second.bytes.data();
}

static int i32(const Arg& a) {
    return std::stoi(a.text);
}

static long long i64(const Arg& a) {
    return std::stoll(a.text);
}

static float f32(const Arg& a) {
    return std::stof(a.text);
}

using Launcher = std::function<std::function<void()>(const std::vector<Arg>&)>;

template <typename T>
static T* p(const Arg& a) {
    return static_cast<T*>(ptr(a));
}

static std::map<std::string, Launcher> kernels() {
    using bf16 = __nv_bfloat16;
    std::map<std::string, Launcher> k;
    k["dense_embed"] = [](const std::vector<Arg>& a) {
        return [=] { dense_embed(p<float>(a[0]), p<bf16>(a[1]), p<int>(a[2]), i32(a[3])); };
    };
    k["dense_rms_norm"] = [](const std::vector<Arg>& a) {
        return [=] { dense_rms_norm(p<float>(a[0]), p<float>(a[1]), p<float>(a[2]), i32(a[3]), f32(a[4])); };
    };
    k["dense_rope"] = [](const std::vector<Arg>& a) {
        return [=] { dense_rope(p<float>(a[0]), p<int>(a[1]), p<float>(a[2]), i32(a[3]), i32(a[4]), i32(a[5])); };
    };
    k["dense_attn_temperature"] = [](const std::vector<Arg>& a) {
        return [=] { dense_attn_temperature(p<float>(a[0]), p<int>(a[1]), i32(a[2]), f32(a[3]), f32(a[4])); };
    };
    k["dense_add"] = [](const std::vector<Arg>& a) {
        return [=] { dense_add(p<float>(a[0]), p<float>(a[1]), i64(a[2])); };
    };
    k["dense_kv_write"] = [](const std::vector<Arg>& a) {
        return [=] { dense_kv_write(p<bf16>(a[0]), p<bf16>(a[1]), p<float>(a[2]), p<float>(a[3]), p<int>(a[4]), i32(a[5])); };
    };
    k["dense_paged_decode_attention"] = [](const std::vector<Arg>& a) {
        return [=] {
            dense_paged_decode_attention(p<float>(a[0]), p<float>(a[1]), p<float>(a[2]), p<float>(a[3]), p<bf16>(a[4]),
                    p<bf16>(a[5]), p<int>(a[6]), i32(a[7]), p<int>(a[8]), p<int>(a[9]), i32(a[10]), i32(a[11]),
                    i32(a[12]), i32(a[13]), i32(a[14]), f32(a[15]));
        };
    };
    k["dense_paged_decode_combine"] = [](const std::vector<Arg>& a) {
        return [=] {
            dense_paged_decode_combine(p<float>(a[0]), p<float>(a[1]), p<float>(a[2]), p<float>(a[3]), i32(a[4]),
                    i32(a[5]), i32(a[6]));
        };
    };
    k["dense_sample"] = [](const std::vector<Arg>& a) {
        return [=] {
            dense_sample(p<int>(a[0]), p<float>(a[1]), i32(a[2]), p<float>(a[3]), p<int>(a[4]), p<float>(a[5]),
                    p<double>(a[6]));
        };
    };
    return k;
}

static void check_guards() {
    for (auto& [name, b] : buffers) {
        for (size_t i = b.size; i < b.bytes.size(); i++) {
            if (b.bytes[i] != kGuardByte) {
                die("a kernel wrote past the end of buffer " + name + " (" + std::to_string(b.size) + " bytes)");
            }
        }
    }
}

}  // namespace emu

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: dense_emulator DIR\n");
        return 1;
    }
    std::string dir = argv[1];
    std::ifstream in(dir + "/launch.txt");
    if (!in) {
        emu::die("cannot read " + dir + "/launch.txt");
    }
    auto table = emu::kernels();
    struct Launch {
        std::string kernel;
        dim3 grid;
        unsigned threads;
        std::vector<emu::Arg> args;
    };
    std::vector<Launch> launches;
    std::string line;
    while (std::getline(in, line)) {
        std::istringstream words(line);
        std::string what;
        if (!(words >> what)) {
            continue;
        }
        if (what == "buffer") {
            std::string name;
            size_t size;
            words >> name >> size;
            emu::Buffer b;
            b.size = size;
            b.bytes.assign(size + emu::kGuard, emu::kGuardByte);
            std::memset(b.bytes.data(), 0, size);
            std::ifstream data(dir + "/" + name + ".bin", std::ios::binary);
            if (data) {
                data.read(reinterpret_cast<char*>(b.bytes.data()), (std::streamsize) size);
                if ((size_t) data.gcount() != size) {
                    emu::die(name + ".bin is shorter than " + std::to_string(size) + " bytes");
                }
            }
            emu::buffers[name] = std::move(b);
        } else if (what == "launch") {
            Launch l;
            words >> l.kernel >> l.grid.x >> l.grid.y >> l.grid.z >> l.threads;
            if (!table.count(l.kernel)) {
                emu::die("unknown kernel " + l.kernel);
            }
            launches.push_back(l);
        } else if (what == "arg") {
            emu::Arg a;
            words >> a.kind;
            words >> a.text;
            launches.back().args.push_back(a);
        } else {
            emu::die("cannot read line: " + line);
        }
    }
    for (Launch& l : launches) {
        emu::kernel_body = table[l.kernel](l.args);
        gridDim = l.grid;
        blockDim = {l.threads, 1, 1};
        for (unsigned z = 0; z < l.grid.z; z++) {
            for (unsigned y = 0; y < l.grid.y; y++) {
                for (unsigned x = 0; x < l.grid.x; x++) {
                    blockIdx = {x, y, z};
                    emu::run_block(l.threads);
                }
            }
        }
        emu::check_guards();
    }
    for (auto& [name, b] : emu::buffers) {
        std::ofstream out(dir + "/" + name + ".out", std::ios::binary);
        out.write(reinterpret_cast<const char*>(b.bytes.data()), (std::streamsize) b.size);
    }
    return 0;
}
