// The cpu backend's native expert GEMM, C = A * W^T, bound through FFM by core's NativeGemm.
// A is rows x k f32 row-major, W is [n, k] f32 or bf16 (little-endian, used as stored: no copy, no
// prepacking), C is rows x n f32. Each call computes output columns [from, to) on the calling thread;
// Java splits the columns across its pool. Blocking as core's Gemm: row tiles sized for L2, a 4 x 3
// register block (12 accumulators), 1 x 4 for the rows left over, a plain dot for the last columns;
// bf16 is widened in registers (zero-extend, shift left 16).
//
// The file is compiled without -mavx2: only the kernels carry target("avx2,fma"), so moe_gemm_isa()
// runs on any x86-64 CPU and tells Java whether the kernels may be called.
// Build: core/src/main/c/build-native.sh (the committed library must match it: NativeGemmFreshnessTest).
#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>

/** 1 if this CPU has AVX2 and FMA, the instructions the kernels use; 0 otherwise. */
int32_t moe_gemm_isa(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? 1 : 0;
}

#pragma GCC push_options
#pragma GCC target("avx2,fma")

#define INLINE static inline __attribute__((always_inline))

INLINE __m256 load8(const void *w, size_t idx, int bf16) {
    if (bf16) {
        __m128i s = _mm_loadu_si128((const __m128i *)((const uint16_t *)w + idx));
        return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(s), 16));
    }
    return _mm256_loadu_ps((const float *)w + idx);
}

INLINE float load1(const void *w, size_t idx, int bf16) {
    if (bf16) {
        union { uint32_t u; float f; } v = {.u = (uint32_t)((const uint16_t *)w)[idx] << 16};
        return v.f;
    }
    return ((const float *)w)[idx];
}

INLINE float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

INLINE void block4x3(const float *a, size_t r, int k, const void *w, size_t col, int bf16, float *c, size_t n) {
    size_t w0 = col * k, w1 = w0 + k, w2 = w1 + k;
    const float *a0 = a + r * k, *a1 = a0 + k, *a2 = a1 + k, *a3 = a2 + k;
    __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps(), c02 = _mm256_setzero_ps();
    __m256 c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps(), c12 = _mm256_setzero_ps();
    __m256 c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps(), c22 = _mm256_setzero_ps();
    __m256 c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps(), c32 = _mm256_setzero_ps();
    int i = 0;
    for (; i + 8 <= k; i += 8) {
        __m256 b0 = load8(w, w0 + i, bf16), b1 = load8(w, w1 + i, bf16), b2 = load8(w, w2 + i, bf16);
        __m256 x = _mm256_loadu_ps(a0 + i);
        c00 = _mm256_fmadd_ps(x, b0, c00); c01 = _mm256_fmadd_ps(x, b1, c01); c02 = _mm256_fmadd_ps(x, b2, c02);
        x = _mm256_loadu_ps(a1 + i);
        c10 = _mm256_fmadd_ps(x, b0, c10); c11 = _mm256_fmadd_ps(x, b1, c11); c12 = _mm256_fmadd_ps(x, b2, c12);
        x = _mm256_loadu_ps(a2 + i);
        c20 = _mm256_fmadd_ps(x, b0, c20); c21 = _mm256_fmadd_ps(x, b1, c21); c22 = _mm256_fmadd_ps(x, b2, c22);
        x = _mm256_loadu_ps(a3 + i);
        c30 = _mm256_fmadd_ps(x, b0, c30); c31 = _mm256_fmadd_ps(x, b1, c31); c32 = _mm256_fmadd_ps(x, b2, c32);
    }
    float s[4][3] = {{hsum(c00), hsum(c01), hsum(c02)}, {hsum(c10), hsum(c11), hsum(c12)},
                     {hsum(c20), hsum(c21), hsum(c22)}, {hsum(c30), hsum(c31), hsum(c32)}};
    const float *ar[4] = {a0, a1, a2, a3};
    for (; i < k; i++) {
        float b[3] = {load1(w, w0 + i, bf16), load1(w, w1 + i, bf16), load1(w, w2 + i, bf16)};
        for (int rr = 0; rr < 4; rr++) {
            for (int j = 0; j < 3; j++) s[rr][j] += ar[rr][i] * b[j];
        }
    }
    float *o = c + r * n + col;
    for (int rr = 0; rr < 4; rr++) {
        for (int j = 0; j < 3; j++) o[(size_t)rr * n + j] = s[rr][j];
    }
}

INLINE void block1x4(const float *x0, int k, const void *w, size_t col, int bf16, float *o) {
    size_t w0 = col * k, w1 = w0 + k, w2 = w1 + k, w3 = w2 + k;
    __m256 c0 = _mm256_setzero_ps(), c1 = _mm256_setzero_ps();
    __m256 c2 = _mm256_setzero_ps(), c3 = _mm256_setzero_ps();
    int i = 0;
    for (; i + 8 <= k; i += 8) {
        __m256 x = _mm256_loadu_ps(x0 + i);
        c0 = _mm256_fmadd_ps(x, load8(w, w0 + i, bf16), c0);
        c1 = _mm256_fmadd_ps(x, load8(w, w1 + i, bf16), c1);
        c2 = _mm256_fmadd_ps(x, load8(w, w2 + i, bf16), c2);
        c3 = _mm256_fmadd_ps(x, load8(w, w3 + i, bf16), c3);
    }
    float s0 = hsum(c0), s1 = hsum(c1), s2 = hsum(c2), s3 = hsum(c3);
    for (; i < k; i++) {
        float x = x0[i];
        s0 += x * load1(w, w0 + i, bf16);
        s1 += x * load1(w, w1 + i, bf16);
        s2 += x * load1(w, w2 + i, bf16);
        s3 += x * load1(w, w3 + i, bf16);
    }
    o[0] = s0; o[1] = s1; o[2] = s2; o[3] = s3;
}

INLINE float dot(const float *x0, int k, const void *w, size_t col, int bf16) {
    size_t w0 = col * k;
    __m256 acc = _mm256_setzero_ps();
    int i = 0;
    for (; i + 8 <= k; i += 8) {
        acc = _mm256_fmadd_ps(_mm256_loadu_ps(x0 + i), load8(w, w0 + i, bf16), acc);
    }
    float s = hsum(acc);
    for (; i < k; i++) {
        s += x0[i] * load1(w, w0 + i, bf16);
    }
    return s;
}

INLINE void columns(const float *a, int rows, int k, const void *w, int bf16, float *c, int n, int from, int to) {
    int full_rows = rows & ~3;
    int row_tile = (256 * 1024 / (k > 0 ? k * 4 : 1)) & ~3;
    if (row_tile < 4) row_tile = 4;
    for (int r0 = 0; r0 < full_rows; r0 += row_tile) {
        int r1 = r0 + row_tile < full_rows ? r0 + row_tile : full_rows;
        int col = from;
        for (; col + 2 < to; col += 3) {
            for (int r = r0; r < r1; r += 4) {
                block4x3(a, r, k, w, col, bf16, c, n);
            }
        }
        for (; col < to; col++) {
            for (int r = r0; r < r1; r++) {
                c[(size_t)r * n + col] = dot(a + (size_t)r * k, k, w, col, bf16);
            }
        }
    }
    for (int r = full_rows; r < rows; r++) {
        int col = from;
        for (; col + 3 < to; col += 4) {
            block1x4(a + (size_t)r * k, k, w, col, bf16, c + (size_t)r * n + col);
        }
        for (; col < to; col++) {
            c[(size_t)r * n + col] = dot(a + (size_t)r * k, k, w, col, bf16);
        }
    }
}

/** Output columns [from, to) of C = A * W^T with bf16 weights. Call only where moe_gemm_isa() is 1. */
void moe_gemm_bt_bf16(const float *a, int32_t rows, int32_t k, const uint16_t *w, int32_t n, float *c,
        int32_t from, int32_t to) {
    columns(a, rows, k, w, 1, c, n, from, to);
}

/** Output columns [from, to) of C = A * W^T with f32 weights. Call only where moe_gemm_isa() is 1. */
void moe_gemm_bt_f32(const float *a, int32_t rows, int32_t k, const float *w, int32_t n, float *c,
        int32_t from, int32_t to) {
    columns(a, rows, k, w, 0, c, n, from, to);
}

#pragma GCC pop_options
