// The SwiGLU expert FFN for Hopper (sm_90a only): the same two grouped GEMMs as moe_ffn.cu, the same
// slot table and the same outputs, fed the way Hopper's tensor cores want to be fed. Built to its own
// PTX by build-ptx.sh; the cuda backend loads it where the device reports compute capability 9.0.
//
//   moe_gate_up_sm90_*  A = x [rows, H]; B = gate/up interleaved [2I, H] (8 rows of gate, then the
//                       same 8 rows of up); stores act = silu(gate) * up as bf16 [rows, I].
//   moe_down_sm90_*     A = act [rows, I]; B = down [H, I]; stores y as bf16 [rows, H].
//
// How a block works (warp specialization, one block per SM, persistent):
//  - warpgroup 0 is the producer: one thread issues TMA copies (cp.async.bulk.tensor) of BK = 64-wide
//    k-slices of A and B into a STAGES-deep ring of shared-memory stages, laid out with the 128-byte
//    swizzle, and signals each stage's "full" mbarrier by transaction bytes;
//  - warpgroups 1.. are consumers: each waits for a stage, multiplies its 64 rows of A by the stage's
//    BN rows of B with wgmma.mma_async (m64n128k16, operands read from shared memory through matrix
//    descriptors, f32 accumulators in registers), keeps that group in flight while it waits for the
//    next stage, and arrives on a stage's "empty" mbarrier once its group has retired, so the producer
//    may overwrite it;
//  - the block walks the round's tiles in a grid-stride loop (tile = blockIdx.x, + gridDim.x, ...),
//    so the producer fetches the next tile's first stages while consumers run the epilogue.
// Tiles are numbered as in moe_ffn.cu (LaunchPlan.java): per expert, m-fastest, so consecutive tiles
// share a weight tile and the weights are read from DRAM about once per round.
//
// Tensor maps: A's (the packed rows of the whole round) is encoded on the host per launch and passed
// as a __grid_constant__ parameter; each expert's B map is encoded once when the expert is uploaded and
// lives in device memory, and the slot table's `weights` field holds its address. Rows past an expert's
// end are read (they belong to the next expert, or are zero-filled by TMA past the batch) and never
// stored; columns and k past the matrix are zero-filled by TMA. K and N need only be multiples of 8
// (TMA's 16-byte global strides).
//
// The descriptor, swizzle and coordinate arithmetic below is mirrored in Sm90Layout.java and tested
// there against the definitions (Sm90LayoutTest).

#include <cstddef>
#include <cstdint>

namespace moe90 {

constexpr int BK = 64;                 // k extent of one stage: 128 bytes of bf16, one swizzle row
constexpr int ROW_BYTES = BK * 2;      // bytes of one tile row in shared memory
constexpr int SWIZZLE_ATOM = 8 * ROW_BYTES;   // 8 rows x 128 B: the 128-byte swizzle's repeat (1024 B)
constexpr int WG_THREADS = 128;        // one warpgroup
constexpr int B_BOX_ROWS = 128;        // rows of one TMA box of B (B tiles of 256 rows take two)
constexpr int WGMMA_N = 128;           // n of one wgmma instruction (m64n128k16)

// One expert of a grouped launch: the same 24 bytes as moe_ffn.cu's ExpertSlot (LaunchPlan.writeSlots),
// except that `weights` is the device address of the expert's B tensor map.
struct ExpertSlot {
    uint64_t weights;
    int row_start;
    int rows;
    int tile_start;
    int tiles_m;
};
static_assert(sizeof(ExpertSlot) == 24, "ExpertSlot must match LaunchPlan.SLOT_BYTES");

// The 128-byte opaque CUtensorMap of cuda.h, without including cuda.h.
struct alignas(64) TensorMap {
    uint64_t opaque[16];
};

template <int CONSUMERS_, int BN_, int STAGES_>
struct Tile {
    static constexpr int CONSUMERS = CONSUMERS_;          // consumer warpgroups, 64 rows each
    static constexpr int BM = 64 * CONSUMERS;
    static constexpr int BN = BN_;
    static constexpr int STAGES = STAGES_;
    static constexpr int THREADS = WG_THREADS * (CONSUMERS + 1);
    static constexpr int NH = BN / WGMMA_N;               // wgmma instructions per k16 step
    static constexpr int A_BYTES = BM * ROW_BYTES;
    static constexpr int B_BYTES = BN * ROW_BYTES;
    static constexpr int STAGE_BYTES = A_BYTES + B_BYTES;
    // Stages, then a full and an empty mbarrier per stage, plus slack to align the stages to 1024 B.
    static constexpr int SMEM_BYTES = STAGES * STAGE_BYTES + STAGES * 16 + SWIZZLE_ATOM;
    static_assert(BN % B_BOX_ROWS == 0, "B tiles are whole TMA boxes");
    static_assert(A_BYTES % SWIZZLE_ATOM == 0 && B_BYTES % SWIZZLE_ATOM == 0, "stages keep 1024-byte alignment");
};

// The shapes LaunchPlan chooses between on Hopper (TileConfig.java mirrors these numbers).
typedef Tile<1, 128, 8> Tile64x128;    // 1 consumer warpgroup: few rows per expert (decode)
typedef Tile<2, 128, 6> Tile128x128;   // 2 consumer warpgroups of 64 x 128
typedef Tile<2, 256, 4> Tile128x256;   // 2 consumer warpgroups of 64 x 256: large batches

// A wgmma shared-memory matrix descriptor (PTX ISA, "Matrix Descriptor Format"): bits 0-13 start
// address >> 4, 16-29 leading-dimension byte offset >> 4, 32-45 stride-dimension byte offset >> 4,
// 49-51 base offset, 62-63 swizzle mode (1 = 128-byte). For a K-major tile in the 128-byte swizzle
// the leading offset is unused (a k16 slice never leaves its 128-byte row) and the stride offset is
// the distance between 8-row core-matrix groups, 1024 bytes; the base offset is 0 because every
// stage starts on a 1024-byte boundary.
__host__ __device__ constexpr uint64_t smem_descriptor(uint32_t smem_address) {
    return (static_cast<uint64_t>((smem_address & 0x3FFFF) >> 4))
           | (static_cast<uint64_t>(1) << 16)
           | (static_cast<uint64_t>(SWIZZLE_ATOM >> 4) << 32)
           | (static_cast<uint64_t>(1) << 62);
}

// The descriptor of the k16 slice `ks` (0..3) of a stage: 32 bytes further along the row. The hardware
// applies the swizzle to the full address, so moving the start inside a 1024-byte-aligned atom reads
// the same chunks TMA wrote there (Sm90LayoutTest.descriptorAdvanceReadsWhatTmaWrote).
__host__ __device__ constexpr uint64_t advance_k(uint64_t descriptor, int ks) {
    return descriptor + static_cast<uint64_t>((ks * 16 * 2) >> 4);
}

#ifndef MOE_EMULATE
__device__ __forceinline__ uint32_t smem_u32(const void* p) {
    return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

__device__ __forceinline__ void mbar_init(uint32_t bar, int count) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count) : "memory");
}

// Makes the barriers' initialisation visible to the async proxy (TMA) before any copy signals them.
__device__ __forceinline__ void fence_barrier_init() {
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}

// Waits until the phase with parity `parity` of the barrier has completed.
__device__ __forceinline__ void mbar_wait(uint32_t bar, uint32_t parity) {
    uint32_t done;
    do {
        asm volatile(
            "{\n .reg .pred p;\n mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n selp.u32 %0, 1, 0, p;\n}\n"
            : "=r"(done)
            : "r"(bar), "r"(parity)
            : "memory");
    } while (!done);
}

__device__ __forceinline__ void mbar_arrive_expect_tx(uint32_t bar, uint32_t bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(bytes) : "memory");
}

__device__ __forceinline__ void mbar_arrive(uint32_t bar) {
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
}

// A tensor map the host wrote into global memory (cuMemcpyHtoD) before the launch is read by the
// tensormap proxy: acquire it, at system scope as the writer was the host, once per block and expert
// before its first use.
__device__ __forceinline__ void tensormap_acquire(const TensorMap* map) {
    asm volatile("fence.proxy.tensormap::generic.acquire.sys [%0], 128;\n" ::"l"(map) : "memory");
}

__device__ __forceinline__ void tensormap_prefetch(const TensorMap* map) {
    asm volatile("prefetch.tensormap [%0];\n" ::"l"(map) : "memory");
}

// One 2-d TMA box {c0 = k, c1 = row} of `map` into shared memory at `dst`; completes on `bar` by bytes.
__device__ __forceinline__ void tma_load_2d(uint32_t dst, const TensorMap* map, int c0, int c1, uint32_t bar) {
    asm volatile(
        "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3}], [%4];\n"
        ::"r"(dst), "l"(map), "r"(c0), "r"(c1), "r"(bar)
        : "memory");
}

// Register budgets of warp specialization: the producer needs few, the consumers hold the accumulators.
template <int N>
__device__ __forceinline__ void regs_dec() {
    asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(N));
}

template <int N>
__device__ __forceinline__ void regs_inc() {
    asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(N));
}

__device__ __forceinline__ void wgmma_fence() {
    asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
}

__device__ __forceinline__ void wgmma_commit() {
    asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
}

template <int N>
__device__ __forceinline__ void wgmma_wait() {
    asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}

// Keeps the compiler from moving accumulator reads or writes across the asynchronous wgmma.
__device__ __forceinline__ void fence_operands(float (&d)[64]) {
#pragma unroll
    for (int i = 0; i < 64; ++i) {
        asm volatile("" : "+f"(d[i])::"memory");
    }
}

// d[64 x 128] += A[64 x 16] · B[128 x 16]^T, both K-major bf16 in shared memory, f32 accumulators.
// Thread t of the warpgroup holds d[4j + 2h + c] = D[16 (t / 32) + (t % 32) / 4 + 8h][8j + 2 (t % 4) + c].
__device__ __forceinline__ void wgmma_m64n128k16(float (&d)[64], uint64_t desc_a, uint64_t desc_b) {
    asm volatile(
        "{\n"
        ".reg .pred p;\n"
        "setp.ne.b32 p, %66, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 "
        "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
        "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "
        "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "
        "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, "
        "%64, %65, p, 1, 1, 0, 0;\n"
        "}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
          "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
          "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
          "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]),
          "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]),
          "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]),
          "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),
          "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
        : "l"(desc_a), "l"(desc_b), "r"(1));
}

// Two f32 to packed bf16x2 with round-to-nearest-even; lo lands in the low half (the lower address).
__device__ __forceinline__ uint32_t pack_bf16x2(float lo, float hi) {
    uint32_t r;
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;\n" : "=r"(r) : "f"(hi), "f"(lo));
    return r;
}

__device__ __forceinline__ void store_u32(uint16_t* p, uint32_t v) {
    *reinterpret_cast<uint32_t*>(p) = v;
}

__device__ __forceinline__ float silu(float g) {
    return g / (1.0f + __expf(-g));
}
#endif

extern __shared__ __align__(1024) unsigned char moe90_smem[];

// The expert and tile of tile index `tile`. Tiles grow along a block's loop, so the slot search
// resumes where the previous tile's ended.
struct TileCoord {
    int row_start;
    int rows;
    int m0;
    int n0;
    const TensorMap* b_map;
};

template <class T>
__device__ __forceinline__ TileCoord locate(const ExpertSlot* __restrict__ slots, int num_slots, int tile, int& s) {
    while (s + 1 < num_slots && tile >= slots[s + 1].tile_start) {
        ++s;
    }
    const ExpertSlot slot = slots[s];
    const int t = tile - slot.tile_start;
    TileCoord c;
    c.row_start = slot.row_start;
    c.rows = slot.rows;
    c.m0 = (t % slot.tiles_m) * T::BM;
    c.n0 = (t / slot.tiles_m) * T::BN;
    c.b_map = reinterpret_cast<const TensorMap*>(slot.weights);
    return c;
}

// The producer thread: for every k-slice of every tile of this block, wait until the stage is free,
// announce its bytes, and issue the A box {BK, BM} and the B boxes {BK, 128}.
template <class T>
__device__ __forceinline__ void produce(const ExpertSlot* __restrict__ slots, int num_slots, int num_tiles,
                                        const TensorMap* a_map, int k, uint32_t stages, uint32_t full,
                                        uint32_t empty) {
    const int ktiles = (k + BK - 1) / BK;
    tensormap_prefetch(a_map);
    int slot = 0;
    int acquired = -1;
    uint32_t it = 0;
    for (int tile = static_cast<int>(blockIdx.x); tile < num_tiles; tile += static_cast<int>(gridDim.x)) {
        const TileCoord c = locate<T>(slots, num_slots, tile, slot);
        if (slot != acquired) {
            tensormap_acquire(c.b_map);
            acquired = slot;
        }
        for (int kt = 0; kt < ktiles; ++kt, ++it) {
            const uint32_t s = it % T::STAGES;
            // A fresh barrier counts as having completed the phase before its first, so the first
            // pass over the ring does not wait.
            mbar_wait(empty + 8 * s, ((it / T::STAGES) & 1) ^ 1);
            mbar_arrive_expect_tx(full + 8 * s, T::STAGE_BYTES);
            const uint32_t sa = stages + s * T::STAGE_BYTES;
            tma_load_2d(sa, a_map, kt * BK, c.row_start + c.m0, full + 8 * s);
#pragma unroll
            for (int h = 0; h < T::BN / B_BOX_ROWS; ++h) {
                tma_load_2d(sa + T::A_BYTES + h * B_BOX_ROWS * ROW_BYTES, c.b_map, kt * BK, c.n0 + h * B_BOX_ROWS,
                            full + 8 * s);
            }
        }
    }
}

// A consumer warpgroup's main loop for one tile: acc[h] = its 64 rows x columns [128h, 128h + 128).
template <class T>
__device__ __forceinline__ void consume(float (&acc)[T::NH][64], int consumer, int ktiles, uint32_t& it,
                                        uint32_t stages, uint32_t full, uint32_t empty) {
#pragma unroll
    for (int h = 0; h < T::NH; ++h) {
#pragma unroll
        for (int i = 0; i < 64; ++i) {
            acc[h][i] = 0.0f;
        }
    }
    const int lane = static_cast<int>(threadIdx.x) & 31;
    uint32_t previous = 0;
    for (int kt = 0; kt < ktiles; ++kt, ++it) {
        const uint32_t s = it % T::STAGES;
        mbar_wait(full + 8 * s, (it / T::STAGES) & 1);
        const uint32_t sa = stages + s * T::STAGE_BYTES + consumer * 64 * ROW_BYTES;
        const uint32_t sb = stages + s * T::STAGE_BYTES + T::A_BYTES;
#pragma unroll
        for (int h = 0; h < T::NH; ++h) {
            fence_operands(acc[h]);
        }
        wgmma_fence();
#pragma unroll
        for (int ks = 0; ks < BK / 16; ++ks) {
#pragma unroll
            for (int h = 0; h < T::NH; ++h) {
                wgmma_m64n128k16(acc[h], advance_k(smem_descriptor(sa), ks),
                                 advance_k(smem_descriptor(sb + h * WGMMA_N * ROW_BYTES), ks));
            }
        }
        wgmma_commit();
        // Keep this stage's group in flight (the tensor cores stay busy while the next stage is
        // awaited) and retire the previous one, whose stage may then be refilled.
        wgmma_wait<1>();
#pragma unroll
        for (int h = 0; h < T::NH; ++h) {
            fence_operands(acc[h]);
        }
        // One arrival per consumer warp (the barrier counts 4 per warpgroup): this warp's part of the
        // stage has been read.
        if (kt > 0 && lane == 0) {
            mbar_arrive(empty + 8 * previous);
        }
        previous = s;
    }
    wgmma_wait<0>();
#pragma unroll
    for (int h = 0; h < T::NH; ++h) {
        fence_operands(acc[h]);
    }
    if (lane == 0) {
        mbar_arrive(empty + 8 * previous);
    }
}

// act[r, i] = silu(gate[r, i]) * up[r, i] as bf16: n8 blocks 2p and 2p + 1 of a wgmma's columns
// hold gate then up for the same 8 intermediate columns (WeightLayout's interleave).
template <class T>
__device__ __forceinline__ void store_gate_up(const float (&acc)[T::NH][64], const TileCoord& c, int consumer,
                                              uint16_t* __restrict__ act, int n) {
    const int t = static_cast<int>(threadIdx.x) & 127;
    const int inter = n >> 1;
#pragma unroll
    for (int h = 0; h < T::NH; ++h) {
#pragma unroll
        for (int p = 0; p < WGMMA_N / 16; ++p) {
            const int ncol = c.n0 + h * WGMMA_N + p * 16;
            if (ncol >= n) {
                continue;
            }
            const int col = (ncol >> 1) + 2 * (t & 3);
#pragma unroll
            for (int hh = 0; hh < 2; ++hh) {
                const int row = c.m0 + consumer * 64 + 16 * (t >> 5) + ((t & 31) >> 2) + 8 * hh;
                if (row < c.rows) {
                    const float v0 = silu(acc[h][8 * p + 2 * hh]) * acc[h][8 * p + 4 + 2 * hh];
                    const float v1 = silu(acc[h][8 * p + 2 * hh + 1]) * acc[h][8 * p + 4 + 2 * hh + 1];
                    store_u32(act + static_cast<size_t>(c.row_start + row) * inter + col, pack_bf16x2(v0, v1));
                }
            }
        }
    }
}

template <class T>
__device__ __forceinline__ void store_down(const float (&acc)[T::NH][64], const TileCoord& c, int consumer,
                                           uint16_t* __restrict__ y, int n) {
    const int t = static_cast<int>(threadIdx.x) & 127;
#pragma unroll
    for (int h = 0; h < T::NH; ++h) {
#pragma unroll
        for (int j = 0; j < WGMMA_N / 8; ++j) {
            const int col = c.n0 + h * WGMMA_N + 8 * j + 2 * (t & 3);
            if (col >= n) {
                continue;
            }
#pragma unroll
            for (int hh = 0; hh < 2; ++hh) {
                const int row = c.m0 + consumer * 64 + 16 * (t >> 5) + ((t & 31) >> 2) + 8 * hh;
                if (row < c.rows) {
                    store_u32(y + static_cast<size_t>(c.row_start + row) * n + col,
                              pack_bf16x2(acc[h][4 * j + 2 * hh], acc[h][4 * j + 2 * hh + 1]));
                }
            }
        }
    }
}

// The whole kernel; GATE_UP picks the epilogue.
template <class T, bool GATE_UP>
__device__ __forceinline__ void run(const ExpertSlot* __restrict__ slots, int num_slots, int num_tiles,
                                    const TensorMap* a_map, uint16_t* __restrict__ out, int n, int k) {
    const uint32_t raw = smem_u32(moe90_smem);
    const uint32_t stages = (raw + SWIZZLE_ATOM - 1) & ~static_cast<uint32_t>(SWIZZLE_ATOM - 1);
    const uint32_t full = stages + T::STAGES * T::STAGE_BYTES;
    const uint32_t empty = full + 8 * T::STAGES;
    const int warpgroup = static_cast<int>(threadIdx.x) / WG_THREADS;
    if (threadIdx.x == 0) {
        for (int s = 0; s < T::STAGES; ++s) {
            mbar_init(full + 8 * s, 1);
            mbar_init(empty + 8 * s, 4 * T::CONSUMERS);
        }
        fence_barrier_init();
    }
    __syncthreads();

    if (warpgroup == 0) {
        regs_dec<40>();
        if (threadIdx.x == 0) {
            produce<T>(slots, num_slots, num_tiles, a_map, k, stages, full, empty);
        }
        return;
    }
    regs_inc<232>();
    const int consumer = warpgroup - 1;
    const int ktiles = (k + BK - 1) / BK;
    int slot = 0;
    uint32_t it = 0;
    for (int tile = static_cast<int>(blockIdx.x); tile < num_tiles; tile += static_cast<int>(gridDim.x)) {
        const TileCoord c = locate<T>(slots, num_slots, tile, slot);
        float acc[T::NH][64];
        consume<T>(acc, consumer, ktiles, it, stages, full, empty);
        if (GATE_UP) {
            store_gate_up<T>(acc, c, consumer, out, n);
        } else {
            store_down<T>(acc, c, consumer, out, n);
        }
    }
}

}  // namespace moe90

// Entry points, named moe_{gate_up,down}_sm90_{BM}x{BN}. Launch with T::THREADS threads, T::SMEM_BYTES
// of dynamic shared memory and at most one block per SM (min(num_tiles, SMs) blocks); num_tiles is
// LaunchPlan.gridSize().
#define MOE_SM90_KERNELS(T, SUFFIX)                                                                       \
    extern "C" __global__ void __launch_bounds__(moe90::T::THREADS, 1) moe_gate_up_sm90_##SUFFIX(         \
        const moe90::ExpertSlot* __restrict__ slots, int num_slots, int num_tiles,                        \
        const __grid_constant__ moe90::TensorMap a_map, uint16_t* __restrict__ act, int n, int k) {       \
        moe90::run<moe90::T, true>(slots, num_slots, num_tiles, &a_map, act, n, k);                       \
    }                                                                                                     \
    extern "C" __global__ void __launch_bounds__(moe90::T::THREADS, 1) moe_down_sm90_##SUFFIX(            \
        const moe90::ExpertSlot* __restrict__ slots, int num_slots, int num_tiles,                        \
        const __grid_constant__ moe90::TensorMap a_map, uint16_t* __restrict__ y, int n, int k) {         \
        moe90::run<moe90::T, false>(slots, num_slots, num_tiles, &a_map, y, n, k);                        \
    }

MOE_SM90_KERNELS(Tile64x128, 64x128)
MOE_SM90_KERNELS(Tile128x128, 128x128)
MOE_SM90_KERNELS(Tile128x256, 128x256)
