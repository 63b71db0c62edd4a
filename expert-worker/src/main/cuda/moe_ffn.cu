// The SwiGLU expert FFN, out = down(silu(gate(x)) * up(x)), for a batch of rows grouped by expert,
// on tensor cores. Built to PTX by build-ptx.sh; the cuda backend loads that PTX with cuModuleLoadData.
//
// Each FFN is two grouped GEMMs, both C[M,N] = A[M,K] · B[N,K]^T with bf16 operands and f32
// accumulation (mma.sync m16n8k16, the warp-level tensor-core instruction of sm_80 and later):
//   moe_gate_up_*  A = x [rows, H] bf16; B = gate and up interleaved, [2I, H] with 8 rows of gate
//                  followed by the same 8 rows of up; the epilogue stores act = silu(gate) * up as
//                  bf16 [rows, I]. The interleave puts a gate column and its up column in the same
//                  thread's accumulators, so the fusion needs no shared memory.
//   moe_down_*     A = act [rows, I]; B = down [H, I]; the epilogue stores bf16 [rows, H].
// The moe_*_fp8_* kernels take B as FP8 e4m3 codes (an FP8 checkpoint's experts, kept at one byte a
// weight on the device) followed by one f32 scale per B row (output channel): the tile loader copies
// the codes into shared memory, each thread widens its B fragments to bf16 in registers (exact: every
// e4m3 value is a bf16 value), the tensor cores multiply as for bf16 weights, and the epilogue
// multiplies each output column by its channel's scale once. A B row is k codes padded with zeros to
// kpad = k rounded up to 16, and inside every 16 codes the order is k 0,1,8,9, 2,3,10,11, 4,5,12,13,
// 6,7,14,15, so one 32-bit shared load gives a thread both registers of its mma B fragment
// (WeightLayout.java writes this layout).
// One launch covers every expert of a batch: blockIdx.x is a tile of one expert, found in the slot
// table the host builds (LaunchPlan.java). An expert's rows are contiguous in A and C; rows past its
// end are zero-filled on load and never stored (predication instead of padded copies). K and N
// need only be multiples of 8 (16-byte rows for cp.async).
//
// A block computes a BM x BN tile: a STAGES-deep cp.async pipeline moves BK-wide slices of A and B
// into shared memory (16-byte chunks, XOR-swizzled so ldmatrix reads are free of bank conflicts),
// and each warp multiplies a (BM/WARPS_M) x (BN/WARPS_N) sub-tile from ldmatrix fragments.
//
// MOE_EMULATE builds this file as host C++ against src/test/cuda/moe_emulator.cpp, which supplies
// the built-ins and the PTX wrappers below, so the kernels' indexing is tested without a GPU.

#include <cstddef>
#include <cstdint>

namespace moe {

constexpr int BK = 32;      // k extent of one pipeline stage: 64 bytes of bf16 per tile row
constexpr int STAGES = 4;   // cp.async stages in flight

// One expert of a grouped launch, written by LaunchPlan.writeSlots (24 bytes, little-endian).
struct ExpertSlot {
    uint64_t weights;   // device address of this expert's B: [N, K] bf16 row-major, or for the fp8
                        // kernels [N, kpad] e4m3 codes then N f32 scales
    int row_start;      // first row of this expert in A and C
    int rows;           // rows of this expert
    int tile_start;     // first blockIdx.x of this expert
    int tiles_m;        // ceil(rows / BM); the expert's tiles are m-fastest: t = n_tile * tiles_m + m_tile
};
static_assert(sizeof(ExpertSlot) == 24, "ExpertSlot must match LaunchPlan.SLOT_BYTES");

template <int BM_, int BN_, int WARPS_M_, int WARPS_N_>
struct Tile {
    static constexpr int BM = BM_;
    static constexpr int BN = BN_;
    static constexpr int WARPS_M = WARPS_M_;
    static constexpr int WARPS_N = WARPS_N_;
    static constexpr int THREADS = WARPS_M * WARPS_N * 32;
    static constexpr int WM = BM / WARPS_M;   // rows of a warp's sub-tile
    static constexpr int WN = BN / WARPS_N;   // columns of a warp's sub-tile
    static constexpr int MI = WM / 16;        // m16 fragments per warp
    static constexpr int NJ = WN / 8;         // n8 fragments per warp
    static constexpr int CHUNKS_PER_ROW = BK / 8;                 // 16-byte chunks per tile row
    static constexpr int A_LOADS = BM * CHUNKS_PER_ROW / THREADS; // cp.async per thread per stage
    static constexpr int B_LOADS = BN * CHUNKS_PER_ROW / THREADS;
    static constexpr int A_STAGE_BYTES = BM * BK * 2;
    static constexpr int STAGE_BYTES = (BM + BN) * BK * 2;
    static constexpr int SMEM_BYTES = STAGES * STAGE_BYTES;
    // FP8 weights: a B tile row is BK one-byte codes, two 16-byte chunks.
    static constexpr int FP8_CHUNKS_PER_ROW = BK / 16;
    static constexpr int FP8_B_LOADS = BN * FP8_CHUNKS_PER_ROW / THREADS;
    static constexpr int FP8_STAGE_BYTES = A_STAGE_BYTES + BN * BK;
    static constexpr int FP8_SMEM_BYTES = STAGES * FP8_STAGE_BYTES;
    static_assert(WM % 16 == 0 && WN % 16 == 0, "warp tile must hold whole m16 and n16 fragments");
    static_assert(BM * CHUNKS_PER_ROW % THREADS == 0 && BN * CHUNKS_PER_ROW % THREADS == 0
                      && BN * FP8_CHUNKS_PER_ROW % THREADS == 0,
                  "every thread loads the same number of chunks");
};

// The shapes LaunchPlan chooses between (TileConfig.java mirrors these numbers).
typedef Tile<128, 256, 2, 4> Tile128x256;   // 8 warps of 64x64, one block per SM: large batches
typedef Tile<128, 128, 2, 2> Tile128x128;   // 4 warps of 64x64, two blocks per SM
typedef Tile<64, 128, 2, 2> Tile64x128;     // 4 warps of 32x64: few rows per expert

#ifndef MOE_EMULATE
__device__ __forceinline__ uint32_t smem_u32(const void* p) {
    return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// 16 bytes global -> shared, bypassing L1; bytes past src_bytes (0 or 16 here) are zero-filled.
__device__ __forceinline__ void cp_async_16(uint32_t dst, const void* src, int src_bytes) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(src_bytes));
}

__device__ __forceinline__ void cp_async_commit() {
    asm volatile("cp.async.commit_group;\n" ::);
}

template <int N>
__device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

__device__ __forceinline__ void ldsm_x4(uint32_t (&r)[4], uint32_t addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}

// d += a · b for one m16n8k16 tile: a row-major 16x16 bf16, b column-major 16x8 bf16, d f32.
__device__ __forceinline__ void mma_bf16_16816(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
        "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
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

__device__ __forceinline__ uint32_t lds_u32(uint32_t addr) {
    uint32_t v;
    asm volatile("ld.shared.u32 %0, [%1];\n" : "=r"(v) : "r"(addr));
    return v;
}

// d = a * b + c on two bf16 lanes, round to nearest even (sm_80; cuda_bf16.hpp's __hmul2 is this
// with c = -0). bf16 arithmetic has no flush-to-zero: subnormal inputs count.
__device__ __forceinline__ uint32_t fma_bf16x2(uint32_t a, uint32_t b, uint32_t c) {
    uint32_t d;
    asm("fma.rn.bf16x2 %0, %1, %2, %3;\n" : "=r"(d) : "r"(a), "r"(b), "r"(c));
    return d;
}

// Two consecutive f32 from global memory (8-byte aligned), through the read-only cache.
__device__ __forceinline__ void ldg_f32x2(const float* p, float& lo, float& hi) {
    const float2 v = __ldg(reinterpret_cast<const float2*>(p));
    lo = v.x;
    hi = v.y;
}
#endif

extern __shared__ __align__(128) unsigned char moe_smem[];

// Byte offset of 16-byte chunk `chunk` (0..3) of tile row `row` inside a stage's A or B tile. Rows
// are 64 bytes, so rows r and r+2 share banks; XOR-ing the chunk with (row/2)%4 spreads the 8 rows
// one ldmatrix phase reads over all 32 banks.
__device__ __forceinline__ uint32_t swizzle(int row, int chunk) {
    return static_cast<uint32_t>(row * (BK * 2) + ((chunk ^ ((row >> 1) & 3)) << 4));
}

// The same for an FP8 B tile, whose rows are 32 bytes (two chunks): rows r and r+4 share banks, so
// the chunk is XOR-ed with (row/4)%2 and the 8 rows x 4 words one fragment load reads hit 32 banks.
__device__ __forceinline__ uint32_t swizzle_fp8(int row, int chunk) {
    return static_cast<uint32_t>(row * BK + ((chunk ^ ((row >> 2) & 1)) << 4));
}

// A B row of k codes is stored padded to a multiple of 16 codes (one permuted group, see the top).
__device__ __forceinline__ int fp8_row_bytes(int k) {
    return (k + 15) & ~15;
}

// Four e4m3 codes (the bytes of w, low first) as bf16: lo gets bytes 0 and 1, hi bytes 2 and 3, each
// pair with the lower byte in the low half. A code's exponent and mantissa bits, moved under bf16's,
// read as the value times 2^-120 (bias 127 against 7), for subnormal codes too; one exact multiply by
// 2^120 puts it right. e4m3fn's NaN codes would read as +-480, as in core's Gemm: quantizers saturate
// at +-448 and never write them.
__device__ __forceinline__ void fp8x4_to_bf16x4(uint32_t w, uint32_t& lo, uint32_t& hi) {
    constexpr uint32_t TWO_TO_120 = 0x7b807b80u;   // bf16 2^120 in both lanes
    constexpr uint32_t MINUS_ZERO = 0x80008000u;   // -0 + x is x for every x, +0 included
    const uint32_t pair01 = ((w & 0xffu) << 8) | ((w & 0xff00u) << 16);   // byte 0 -> bits 8-15, byte 1 -> 24-31
    const uint32_t pair23 = ((w >> 8) & 0xff00u) | (w & 0xff000000u);      // byte 2 -> bits 8-15, byte 3 -> 24-31
    lo = fma_bf16x2((pair01 & 0x80008000u) | ((pair01 >> 4) & 0x07f007f0u), TWO_TO_120, MINUS_ZERO);
    hi = fma_bf16x2((pair23 & 0x80008000u) | ((pair23 >> 4) & 0x07f007f0u), TWO_TO_120, MINUS_ZERO);
}

// The expert and tile this block computes.
struct TileCoord {
    int row_start;   // first row of the expert in A and C
    int rows;        // rows of the expert
    int m0;          // first row of the tile within the expert
    int n0;          // first column of the tile
    const unsigned char* b;   // the expert's B (bf16, or fp8 codes and scales)
};

template <class T>
__device__ __forceinline__ TileCoord locate(const ExpertSlot* __restrict__ slots, int num_slots) {
    const int block = static_cast<int>(blockIdx.x);
    int s = 0;
    while (s + 1 < num_slots && block >= slots[s + 1].tile_start) {
        ++s;
    }
    const ExpertSlot slot = slots[s];
    const int t = block - slot.tile_start;
    TileCoord c;
    c.row_start = slot.row_start;
    c.rows = slot.rows;
    c.m0 = (t % slot.tiles_m) * T::BM;
    c.n0 = (t / slot.tiles_m) * T::BN;
    c.b = reinterpret_cast<const unsigned char*>(slot.weights);
    return c;
}

// Issues the cp.async copies of k-slice `k0` into stage base `stage` (A tile first, then B).
// a points at row m0 of the tile, b at row n0; rows past a_rows / b_rows and chunks past k are zeros.
// FP8 B rows are kpad codes long and move 16 codes a chunk.
template <class T, bool FP8>
__device__ __forceinline__ void load_stage(uint32_t stage, const uint16_t* a, int a_rows,
                                           const unsigned char* b, int b_rows, int k, int k0, int tid) {
#pragma unroll
    for (int i = 0; i < T::A_LOADS; ++i) {
        const int c = tid + i * T::THREADS;
        const int row = c / T::CHUNKS_PER_ROW;
        const int chunk = c % T::CHUNKS_PER_ROW;
        const int kk = k0 + chunk * 8;
        const bool ok = row < a_rows && kk < k;
        const uint16_t* src = ok ? a + static_cast<size_t>(row) * k + kk : a;
        cp_async_16(stage + swizzle(row, chunk), src, ok ? 16 : 0);
    }
    if constexpr (FP8) {
        const int kpad = fp8_row_bytes(k);
#pragma unroll
        for (int i = 0; i < T::FP8_B_LOADS; ++i) {
            const int c = tid + i * T::THREADS;
            const int row = c / T::FP8_CHUNKS_PER_ROW;
            const int chunk = c % T::FP8_CHUNKS_PER_ROW;
            const int kk = k0 + chunk * 16;
            const bool ok = row < b_rows && kk < kpad;
            const unsigned char* src = ok ? b + static_cast<size_t>(row) * kpad + kk : b;
            cp_async_16(stage + T::A_STAGE_BYTES + swizzle_fp8(row, chunk), src, ok ? 16 : 0);
        }
    } else {
        const uint16_t* b16 = reinterpret_cast<const uint16_t*>(b);
#pragma unroll
        for (int i = 0; i < T::B_LOADS; ++i) {
            const int c = tid + i * T::THREADS;
            const int row = c / T::CHUNKS_PER_ROW;
            const int chunk = c % T::CHUNKS_PER_ROW;
            const int kk = k0 + chunk * 8;
            const bool ok = row < b_rows && kk < k;
            const uint16_t* src = ok ? b16 + static_cast<size_t>(row) * k + kk : b16;
            cp_async_16(stage + T::A_STAGE_BYTES + swizzle(row, chunk), src, ok ? 16 : 0);
        }
    }
}

// The main loop: acc[mi][nj] = this warp's 16x8 fragments of A[m0.., :] · B[n0.., :]^T.
template <class T, bool FP8>
__device__ __forceinline__ void mainloop(float (&acc)[T::MI][T::NJ][4], const TileCoord& c,
                                         const uint16_t* __restrict__ a_all, int n, int k) {
    const int tid = static_cast<int>(threadIdx.x);
    const int lane = tid & 31;
    const int warp = tid >> 5;
    const int wm0 = (warp / T::WARPS_N) * T::WM;
    const int wn0 = (warp % T::WARPS_N) * T::WN;
    const uint32_t smem = smem_u32(moe_smem);

    const uint16_t* a = a_all + static_cast<size_t>(c.row_start + c.m0) * k;
    const unsigned char* b = c.b + static_cast<size_t>(c.n0) * (FP8 ? fp8_row_bytes(k) : 2 * k);
    constexpr int STAGE_BYTES = FP8 ? T::FP8_STAGE_BYTES : T::STAGE_BYTES;
    const int a_rows = c.rows - c.m0;
    const int b_rows = n - c.n0;

#pragma unroll
    for (int mi = 0; mi < T::MI; ++mi) {
#pragma unroll
        for (int nj = 0; nj < T::NJ; ++nj) {
#pragma unroll
            for (int q = 0; q < 4; ++q) {
                acc[mi][nj][q] = 0.0f;
            }
        }
    }

    const int ktiles = (k + BK - 1) / BK;
#pragma unroll
    for (int s = 0; s < STAGES - 1; ++s) {
        if (s < ktiles) {
            load_stage<T, FP8>(smem + s * STAGE_BYTES, a, a_rows, b, b_rows, k, s * BK, tid);
        }
        cp_async_commit();
    }

    // ldmatrix lane roles. A (x4 = one 16x16 fragment): lanes 0-15 address rows 0-15 at k 0-7,
    // lanes 16-31 the same rows at k 8-15, giving a0..a3 of mma's A layout. B (x4 = two n8
    // fragments): lanes 0-7 rows n 0-7 at k 0-7, 8-15 n 0-7 at k 8-15, 16-23 n 8-15 at k 0-7,
    // 24-31 n 8-15 at k 8-15, giving {b0, b1} of the first n8 fragment then of the second.
    // FP8 B: lane reads the 4 codes of row n = lane/4 at (permuted) k 2q, 2q+1, 2q+8, 2q+9, q = lane%4.
    const int a_row = wm0 + (lane & 15);
    const int a_khalf = lane >> 4;
    const int b_row = wn0 + ((lane >> 4) << 3) + (lane & 7);
    const int b_khalf = (lane >> 3) & 1;

    for (int kt = 0; kt < ktiles; ++kt) {
        // Groups committed so far: STAGES - 1 + kt; all but the newest STAGES - 2 are complete, so
        // k-slice kt has landed for this thread, and the barrier makes every thread's copies visible
        // and guarantees all warps are done reading the stage the next load overwrites.
        cp_async_wait<STAGES - 2>();
        __syncthreads();
        const int next = kt + STAGES - 1;
        if (next < ktiles) {
            load_stage<T, FP8>(smem + (next % STAGES) * STAGE_BYTES, a, a_rows, b, b_rows, k, next * BK, tid);
        }
        cp_async_commit();

        const uint32_t sa = smem + (kt % STAGES) * STAGE_BYTES;
        const uint32_t sb = sa + T::A_STAGE_BYTES;
#pragma unroll
        for (int ks = 0; ks < BK / 16; ++ks) {
            uint32_t af[T::MI][4];
            uint32_t bf[T::NJ][2];
#pragma unroll
            for (int mi = 0; mi < T::MI; ++mi) {
                ldsm_x4(af[mi], sa + swizzle(a_row + mi * 16, ks * 2 + a_khalf));
            }
            if constexpr (FP8) {
#pragma unroll
                for (int nj = 0; nj < T::NJ; ++nj) {
                    const uint32_t codes = lds_u32(sb + swizzle_fp8(wn0 + nj * 8 + (lane >> 2), ks) + 4 * (lane & 3));
                    fp8x4_to_bf16x4(codes, bf[nj][0], bf[nj][1]);
                }
            } else {
#pragma unroll
                for (int nq = 0; nq < T::NJ / 2; ++nq) {
                    uint32_t r[4];
                    ldsm_x4(r, sb + swizzle(b_row + nq * 16, ks * 2 + b_khalf));
                    bf[2 * nq][0] = r[0];
                    bf[2 * nq][1] = r[1];
                    bf[2 * nq + 1][0] = r[2];
                    bf[2 * nq + 1][1] = r[3];
                }
            }
#pragma unroll
            for (int mi = 0; mi < T::MI; ++mi) {
#pragma unroll
                for (int nj = 0; nj < T::NJ; ++nj) {
                    mma_bf16_16816(acc[mi][nj], af[mi], bf[nj]);
                }
            }
        }
    }
    cp_async_wait<0>();
}

// act[r, i] = silu(gate[r, i]) * up[r, i] as bf16, from the interleaved gate/up product. An n8
// fragment pair (2p, 2p+1) holds gate then up for the same 8 intermediate columns. With FP8 weights
// each column is first multiplied by its channel's scale (the scales follow B, in B's row order).
template <class T, bool FP8>
__device__ __forceinline__ void gate_up(const ExpertSlot* __restrict__ slots, int num_slots,
                                        const uint16_t* __restrict__ x, uint16_t* __restrict__ act,
                                        int n, int k) {
    const TileCoord c = locate<T>(slots, num_slots);
    float acc[T::MI][T::NJ][4];
    mainloop<T, FP8>(acc, c, x, n, k);
    const float* scale = FP8 ? reinterpret_cast<const float*>(c.b + static_cast<size_t>(n) * fp8_row_bytes(k)) : nullptr;

    const int tid = static_cast<int>(threadIdx.x);
    const int lane = tid & 31;
    const int warp = tid >> 5;
    const int wm0 = (warp / T::WARPS_N) * T::WM;
    const int wn0 = (warp % T::WARPS_N) * T::WN;
    const int inter = n >> 1;
#pragma unroll
    for (int p = 0; p < T::NJ / 2; ++p) {
        const int ncol = c.n0 + wn0 + p * 16;   // first gate row of this pair in the interleaved B
        if (ncol >= n) {
            continue;
        }
        const int col = (ncol >> 1) + 2 * (lane & 3);
        float gate0 = 1.0f, gate1 = 1.0f, up0 = 1.0f, up1 = 1.0f;
        if constexpr (FP8) {
            ldg_f32x2(scale + ncol + 2 * (lane & 3), gate0, gate1);
            ldg_f32x2(scale + ncol + 8 + 2 * (lane & 3), up0, up1);
        }
#pragma unroll
        for (int mi = 0; mi < T::MI; ++mi) {
#pragma unroll
            for (int h = 0; h < 2; ++h) {
                const int row = c.m0 + wm0 + mi * 16 + (lane >> 2) + 8 * h;
                if (row < c.rows) {
                    float v0, v1;
                    if constexpr (FP8) {
                        v0 = silu(acc[mi][2 * p][2 * h] * gate0) * (acc[mi][2 * p + 1][2 * h] * up0);
                        v1 = silu(acc[mi][2 * p][2 * h + 1] * gate1) * (acc[mi][2 * p + 1][2 * h + 1] * up1);
                    } else {
                        v0 = silu(acc[mi][2 * p][2 * h]) * acc[mi][2 * p + 1][2 * h];
                        v1 = silu(acc[mi][2 * p][2 * h + 1]) * acc[mi][2 * p + 1][2 * h + 1];
                    }
                    store_u32(act + static_cast<size_t>(c.row_start + row) * inter + col, pack_bf16x2(v0, v1));
                }
            }
        }
    }
}

// y[r, :] = act[r, :] · down^T, accumulated in f32 and written as bf16 (the wire's dtype: the host
// copies the rows out as they are, and half the bytes come down over PCIe); with FP8 weights times
// each output channel's scale.
template <class T, bool FP8>
__device__ __forceinline__ void down(const ExpertSlot* __restrict__ slots, int num_slots,
                                     const uint16_t* __restrict__ act, uint16_t* __restrict__ y, int n, int k) {
    const TileCoord c = locate<T>(slots, num_slots);
    float acc[T::MI][T::NJ][4];
    mainloop<T, FP8>(acc, c, act, n, k);
    const float* scale = FP8 ? reinterpret_cast<const float*>(c.b + static_cast<size_t>(n) * fp8_row_bytes(k)) : nullptr;

    const int tid = static_cast<int>(threadIdx.x);
    const int lane = tid & 31;
    const int warp = tid >> 5;
    const int wm0 = (warp / T::WARPS_N) * T::WM;
    const int wn0 = (warp % T::WARPS_N) * T::WN;
#pragma unroll
    for (int nj = 0; nj < T::NJ; ++nj) {
        const int col = c.n0 + wn0 + nj * 8 + 2 * (lane & 3);
        if (col >= n) {
            continue;
        }
        float s0 = 1.0f, s1 = 1.0f;
        if constexpr (FP8) {
            ldg_f32x2(scale + col, s0, s1);
        }
#pragma unroll
        for (int mi = 0; mi < T::MI; ++mi) {
#pragma unroll
            for (int h = 0; h < 2; ++h) {
                const int row = c.m0 + wm0 + mi * 16 + (lane >> 2) + 8 * h;
                if (row < c.rows) {
                    uint32_t packed;
                    if constexpr (FP8) {
                        packed = pack_bf16x2(acc[mi][nj][2 * h] * s0, acc[mi][nj][2 * h + 1] * s1);
                    } else {
                        packed = pack_bf16x2(acc[mi][nj][2 * h], acc[mi][nj][2 * h + 1]);
                    }
                    store_u32(y + static_cast<size_t>(c.row_start + row) * n + col, packed);
                }
            }
        }
    }
}

}  // namespace moe

// Entry points, named moe_{gate_up,down}_{BM}x{BN} (bf16 weights) and moe_{gate_up,down}_fp8_{BM}x{BN}
// (FP8 weights and scales). Launch with T::THREADS threads and T::SMEM_BYTES (FP8: T::FP8_SMEM_BYTES)
// of dynamic shared memory (raise the function's limit past 48 KiB first).
#define MOE_FFN_KERNELS(T, SUFFIX, MIN_BLOCKS, FP8, NAME)                                                 \
    extern "C" __global__ void __launch_bounds__(moe::T::THREADS, MIN_BLOCKS) moe_gate_up_##NAME##SUFFIX( \
        const moe::ExpertSlot* __restrict__ slots, int num_slots, const uint16_t* __restrict__ x,        \
        uint16_t* __restrict__ act, int n, int k) {                                                      \
        moe::gate_up<moe::T, FP8>(slots, num_slots, x, act, n, k);                                      \
    }                                                                                                    \
    extern "C" __global__ void __launch_bounds__(moe::T::THREADS, MIN_BLOCKS) moe_down_##NAME##SUFFIX(    \
        const moe::ExpertSlot* __restrict__ slots, int num_slots, const uint16_t* __restrict__ act,      \
        uint16_t* __restrict__ y, int n, int k) {                                                        \
        moe::down<moe::T, FP8>(slots, num_slots, act, y, n, k);                                         \
    }

MOE_FFN_KERNELS(Tile128x256, 128x256, 1, false, )
MOE_FFN_KERNELS(Tile128x128, 128x128, 2, false, )
MOE_FFN_KERNELS(Tile64x128, 64x128, 2, false, )
MOE_FFN_KERNELS(Tile128x256, 128x256, 1, true, fp8_)
MOE_FFN_KERNELS(Tile128x128, 128x128, 2, true, fp8_)
MOE_FFN_KERNELS(Tile64x128, 64x128, 2, true, fp8_)

#ifndef MOE_EMULATE
// Fills n bf16 values with a hash of (index, seed) mapped uniformly to [-scale, scale): test and
// benchmark weights made on the device, with no host generation or upload.
extern "C" __global__ void moe_fill_random_bf16(uint16_t* __restrict__ dst, uint64_t n, uint32_t seed, float scale) {
    const uint64_t stride = static_cast<uint64_t>(gridDim.x) * blockDim.x;
    for (uint64_t i = static_cast<uint64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
        uint64_t z = (i + 1) * 0x9E3779B97F4A7C15ull ^ (static_cast<uint64_t>(seed) << 32);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        z ^= z >> 31;
        const float u = static_cast<float>(z >> 40) * (1.0f / 16777216.0f);   // [0, 1)
        const uint32_t packed = moe::pack_bf16x2((2.0f * u - 1.0f) * scale, 0.0f);
        dst[i] = static_cast<uint16_t>(packed & 0xffffu);
    }
}
#endif
