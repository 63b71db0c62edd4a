// The part of a CPU emulation of CUDA kernels that any kernel needs (moe_emulator.cpp runs moe_ffn.cu,
// moe_emulator_sm90.cpp runs moe_ffn_sm90.cu): the built-in variables, one fiber (ucontext) per CUDA
// thread of a block resumed in turn by a scheduler that detects deadlock, block and warp barriers,
// bounds checks on global and shared memory, bf16 conversions, and reading the test's files.
// A fiber yields wherever the emulated instruction would wait for other threads.
#pragma once

#include <ucontext.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <fstream>
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
#define __host__
#define __grid_constant__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__
#define __align__(n) __attribute__((aligned(n)))

namespace emu {

[[noreturn]] static void die(const std::string& why) {
    std::fprintf(stderr, "moe_emulator: %s (block %u, thread %u)\n", why.c_str(), blockIdx.x, threadIdx.x);
    std::fflush(stderr);
    std::_Exit(2);  // no exit handlers: this may run on a fiber's stack
}

constexpr size_t kSmemCapacity = 228 * 1024;
static size_t smem_bytes;   // dynamic shared memory of the current launch
static bool eager_copies;

// Global memory the current launch may touch.
struct Region {
    const unsigned char* base;
    size_t bytes;
    const char* name;
};
static std::vector<Region> regions;

static void check_global(const void* p, size_t n, const char* what) {
    auto a = static_cast<const unsigned char*>(p);
    for (const Region& r : regions) {
        if (a >= r.base && a + n <= r.base + r.bytes) {
            return;
        }
    }
    die(std::string(what) + " outside every buffer of the launch");
}

[[maybe_unused]] static void check_smem(uint32_t addr, size_t n, size_t align, const char* what) {
    if (addr % align != 0 || addr + n > smem_bytes) {
        die(std::string(what) + " at shared offset " + std::to_string(addr) + " is misaligned or past the "
            + std::to_string(smem_bytes) + " bytes of the launch");
    }
}

// ---- fibers ----
struct Copy {
    uint32_t dst;
    const void* src;
    int bytes;
};

struct Fiber {
    ucontext_t ctx;
    std::vector<char> stack;
    unsigned tid = 0;
    bool done = false;
    std::vector<Copy> pending;             // issued, not yet committed
    std::deque<std::vector<Copy>> groups;  // committed, not yet retired
};

static ucontext_t scheduler;
static std::vector<Fiber> fibers;
static Fiber* current;
static bool progress;
static void (*kernel_body)();

static void yield() {
    swapcontext(&current->ctx, &scheduler);
}

static void fiber_main() {
    kernel_body();
    current->done = true;
    progress = true;
}

struct Barrier {
    int expected = 0;
    int arrived = 0;
    unsigned generation = 0;
};

static Barrier block_barrier;

// Arrives; the last thread to arrive runs complete() for everyone, the others wait for it.
template <class F>
static void arrive_and_wait(Barrier& b, F complete) {
    progress = true;
    unsigned gen = b.generation;
    if (++b.arrived == b.expected) {
        b.arrived = 0;
        complete();
        b.generation++;
        return;
    }
    while (b.generation == gen) {
        yield();
    }
}


static float bf16_to_f32(uint16_t v) {
    uint32_t bits = static_cast<uint32_t>(v) << 16;
    float f;
    std::memcpy(&f, &bits, 4);
    return f;
}

static uint16_t f32_to_bf16(float f) {
    uint32_t bits;
    std::memcpy(&bits, &f, 4);
    if ((bits & 0x7fffffffu) > 0x7f800000u) {
        return static_cast<uint16_t>((bits >> 16) | 0x40);
    }
    return static_cast<uint16_t>((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);
}


// Runs `body` as a grid of `grid` blocks of `threads` threads, with `smem` bytes of the block's shared
// memory at `shared` (0xff-filled, bf16 NaN, before every block); on_block resets the caller's
// per-block state.
static void launch(unsigned grid, unsigned threads, size_t smem, unsigned char* shared, void (*body)(),
                   void (*on_block)()) {
    if (smem > kSmemCapacity) {
        die("launch asks for more shared memory than a GPU block can have");
    }
    smem_bytes = smem;
    kernel_body = body;
    gridDim.x = grid;
    blockDim.x = threads;
    fibers.assign(threads, Fiber());
    for (Fiber& f : fibers) {
        f.stack.resize(256 * 1024);
    }
    for (unsigned b = 0; b < grid; b++) {
        blockIdx.x = b;
        std::memset(shared, 0xff, kSmemCapacity);
        block_barrier = Barrier{static_cast<int>(threads)};
        on_block();
        for (unsigned t = 0; t < threads; t++) {
            Fiber& f = fibers[t];
            f.tid = t;
            f.done = false;
            f.pending.clear();
            f.groups.clear();
            getcontext(&f.ctx);
            f.ctx.uc_stack.ss_sp = f.stack.data();
            f.ctx.uc_stack.ss_size = f.stack.size();
            f.ctx.uc_link = &scheduler;
            makecontext(&f.ctx, fiber_main, 0);
        }
        for (;;) {
            bool alive = false;
            progress = false;
            for (Fiber& f : fibers) {
                if (!f.done) {
                    alive = true;
                    current = &f;
                    threadIdx.x = f.tid;
                    swapcontext(&scheduler, &f.ctx);
                }
            }
            if (!alive) {
                break;
            }
            if (!progress) {
                die("deadlock: threads wait at a barrier the others never reach");
            }
        }
    }
}

static std::vector<unsigned char> read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        die("cannot read " + path);
    }
    return std::vector<unsigned char>((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

}  // namespace emu
