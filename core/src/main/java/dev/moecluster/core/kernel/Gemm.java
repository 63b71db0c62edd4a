package dev.moecluster.core.kernel;

import dev.moecluster.core.tensor.DType;
import dev.moecluster.core.tensor.Numerics;
import dev.moecluster.core.tensor.Tensor;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ForkJoinPool;
import java.util.concurrent.ForkJoinTask;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorSpecies;

/**
 * The portable CPU GEMM, {@code C = A · Wᵀ} with f32 activations and f32, bf16 or FP8 e4m3 weights
 * used as stored ({@code W} is {@code [N, K]}, the layout of a Linear weight). bf16 is widened to f32
 * in registers, never copied, by splitting int lanes of weight pairs (see {@link #splitPairs}); FP8
 * the same way from int lanes of four codes (see {@link #splitQuads}). FP8 results are the dot
 * products of the codes' values: the caller applies the per-channel scales.
 * Register-blocked micro-kernels (4 rows × 3 weight rows, and 1 × 4 for the batch-1 GEMV) run over
 * column ranges split across a fork-join pool.
 */
public final class Gemm {
    private static final VectorSpecies<Float> F = FloatVector.SPECIES_PREFERRED;
    /** Int lanes of the same shape as {@link #F}: each holds a pair of bf16 weights. */
    private static final VectorSpecies<Integer> I = VectorSpecies.of(int.class, F.vectorShape());
    private static final int L = F.length();
    private static final ValueLayout.OfShort SHORT_LE = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfFloat FLOAT_LE = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    /** e4m3 code bits placed in an f32's exponent and mantissa read 2^120 too small (bias 127 against 7). */
    private static final float FP8_BIAS_FIX = 0x1p120f;
    /** Below this many multiply-adds a GEMM runs on the calling thread: forking costs more. */
    private static final long PARALLEL_THRESHOLD = 1L << 18;

    private static final ForkJoinPool POOL = new ForkJoinPool(Runtime.getRuntime().availableProcessors(),
            pool -> {
                var t = ForkJoinPool.defaultForkJoinWorkerThreadFactory.newThread(pool);
                t.setName("moe-gemm-" + t.getPoolIndex());
                t.setDaemon(true);
                return t;
            }, null, false);

    /** Never started. Memory of a confined arena is accessible only by its owner, so never by this thread. */
    private static final Thread NOT_THE_OWNER = Thread.ofPlatform().unstarted(() -> {});

    private Gemm() {}

    /** f32 lanes per vector: 8 with AVX2, 16 with AVX-512. */
    static int lanes() {
        return L;
    }

    /** The number of threads GEMMs are split across. */
    public static int parallelism() {
        return POOL.getParallelism();
    }

    /** This class's kernels as a {@link MatMul}: the portable path every machine can run. */
    public static final MatMul VECTOR = new MatMul() {
        @Override
        public String name() {
            return "vector";
        }

        @Override
        public void matmulTransposed(float[] a, int rows, int k, Tensor w, float[] c) {
            Gemm.matmulTransposed(a, rows, k, w, c);
        }
    };

    /**
     * {@code c[r][n] = Σ_k a[r][k] · w[n][k]} for {@code rows} rows; {@code a} is {@code rows × k},
     * {@code c} is {@code rows × N}, both row-major from index 0.
     */
    public static void matmulTransposed(float[] a, int rows, int k, Tensor w, float[] c) {
        if (w.dtype() == DType.FP8_E4M3) {
            checkShapes(a, rows, k, w, c);
            split(splitQuads(a, rows, k), rows, k, w.data(), false, c, Math.toIntExact(w.dim(0)), Gemm::columnsFp8);
            return;
        }
        boolean bf16 = checkOperands(a, rows, k, w, c);
        float[] x = bf16 ? splitPairs(a, rows, k) : a;
        split(x, rows, k, w.data(), bf16, c, Math.toIntExact(w.dim(0)), Gemm::columns);
    }

    /**
     * Checks the operands of {@code C = A · Wᵀ} and says whether the weights are bf16 (else f32).
     *
     * @throws IllegalArgumentException on mismatched shapes, short buffers or another weight dtype
     */
    static boolean checkOperands(float[] a, int rows, int k, Tensor w, float[] c) {
        checkShapes(a, rows, k, w, c);
        return switch (w.dtype()) {
            case BF16 -> true;
            case F32 -> false;
            default -> throw new IllegalArgumentException("GEMM weights must be f32 or bf16, got " + w.dtype());
        };
    }

    private static void checkShapes(float[] a, int rows, int k, Tensor w, float[] c) {
        if (w.rank() != 2 || w.dim(1) != k) {
            throw new IllegalArgumentException("weight " + w + " does not take inputs of width " + k);
        }
        int n = Math.toIntExact(w.dim(0));
        if (a.length < rows * k || c.length < rows * n) {
            throw new IllegalArgumentException("buffers too small for " + rows + " rows");
        }
    }

    /** Output columns {@code [from, to)} of {@code C = A · Wᵀ} for all rows, on the calling thread. */
    @FunctionalInterface
    interface ColumnKernel {
        void columns(float[] a, int rows, int k, MemorySegment w, boolean bf16, float[] c, int n, int from, int to);
    }

    /** Runs {@code kernel} over all {@code n} output columns, split across the pool where that pays. */
    static void split(float[] a, int rows, int k, MemorySegment seg, boolean bf16, float[] c, int n, ColumnKernel kernel) {
        long work = (long) rows * n * k;
        int threads = POOL.getParallelism();
        // Weights in a confined arena cannot be read by the pool's threads: multiply them on this one.
        if (work < PARALLEL_THRESHOLD || threads == 1 || n < 8 || !seg.isAccessibleBy(NOT_THE_OWNER)) {
            kernel.columns(a, rows, k, seg, bf16, c, n, 0, n);
            return;
        }
        int parts = Math.min(threads * 2, n / 4);
        List<ForkJoinTask<?>> tasks = new ArrayList<>(parts);
        for (int p = 0; p < parts; p++) {
            // Multiples of 12 suit both the 3-column and the 4-column micro-kernels.
            int from = (int) ((long) n * p / parts) / 12 * 12;
            int to = p == parts - 1 ? n : (int) ((long) n * (p + 1) / parts) / 12 * 12;
            if (from < to) {
                tasks.add(POOL.submit(() -> kernel.columns(a, rows, k, seg, bf16, c, n, from, to)));
            }
        }
        for (ForkJoinTask<?> t : tasks) {
            t.join();
        }
    }

    /**
     * bf16 weights are read as int lanes, each holding the pair (even k, odd k), and split with a shift
     * and a mask. These are same-shape operations every C2 compiles to plain instructions, unlike a
     * shape-changing cast (ShortVector S2I), which depends on the JDK and vector shape having an
     * intrinsic (it measured level on JDK 25 with AVX2: bench/RESULTS.md). The activations are permuted
     * to match: within every block of {@code 2L} values the even-k ones come first, then the odd-k
     * ones; the tail after the last whole block stays in place.
     */
    static float[] splitPairs(float[] a, int rows, int k) {
        float[] x = new float[rows * k];
        int upper = k - k % (2 * L);
        for (int r = 0; r < rows; r++) {
            int base = r * k;
            for (int b = 0; b < upper; b += 2 * L) {
                for (int j = 0; j < L; j++) {
                    x[base + b + j] = a[base + b + 2 * j];
                    x[base + b + L + j] = a[base + b + 2 * j + 1];
                }
            }
            System.arraycopy(a, base + upper, x, base + upper, k - upper);
        }
        return x;
    }

    /** Computes output columns [from, to) for all rows; bf16 takes activations from {@link #splitPairs}. */
    private static void columns(float[] a, int rows, int k, MemorySegment w, boolean bf16, float[] c, int n, int from, int to) {
        long rowBytes = (long) k * (bf16 ? 2 : 4);
        int fullRows = rows & ~3;
        // Tile rows so the activations being reused stay in L2 while a weight pair stays in L1.
        int rowTile = Math.max(4, (256 * 1024 / Math.max(1, k * 4)) & ~3);
        for (int r0 = 0; r0 < fullRows; r0 += rowTile) {
            int r1 = Math.min(fullRows, r0 + rowTile);
            int col = from;
            for (; col + 2 < to; col += 3) {
                for (int r = r0; r < r1; r += 4) {
                    if (bf16) {
                        block4x3Bf16(a, r, k, w, col * rowBytes, rowBytes, c, n, col);
                    } else {
                        block4x3(a, r, k, w, col * rowBytes, rowBytes, c, n, col);
                    }
                }
            }
            for (; col < to; col++) {
                for (int r = r0; r < r1; r++) {
                    c[r * n + col] = bf16 ? dotBf16(a, r * k, k, w, col * rowBytes) : dot(a, r * k, k, w, col * rowBytes);
                }
            }
        }
        for (int r = fullRows; r < rows; r++) {
            int col = from;
            for (; col + 3 < to; col += 4) {
                if (bf16) {
                    block1x4Bf16(a, r * k, k, w, col * rowBytes, rowBytes, c, r * n + col);
                } else {
                    block1x4(a, r * k, k, w, col * rowBytes, rowBytes, c, r * n + col);
                }
            }
            for (; col < to; col++) {
                c[r * n + col] = bf16 ? dotBf16(a, r * k, k, w, col * rowBytes) : dot(a, r * k, k, w, col * rowBytes);
            }
        }
    }

    private static FloatVector load(MemorySegment w, long offset) {
        return FloatVector.fromMemorySegment(F, w, offset, ByteOrder.LITTLE_ENDIAN);
    }

    private static IntVector pairs(MemorySegment w, long offset) {
        return IntVector.fromMemorySegment(I, w, offset, ByteOrder.LITTLE_ENDIAN);
    }

    /** The even-k bf16 values of {@code pairs}, widened: the low halves shifted up. */
    private static FloatVector even(IntVector pairs) {
        return pairs.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats();
    }

    /** The odd-k bf16 values of {@code pairs}, widened: the high halves with the low ones cleared. */
    private static FloatVector odd(IntVector pairs) {
        return pairs.lanewise(VectorOperators.AND, 0xffff0000).reinterpretAsFloats();
    }

    private static float bf16(MemorySegment w, long offset) {
        return Numerics.fromBf16(w.get(SHORT_LE, offset));
    }

    /**
     * 4 rows × 3 weight rows: 12 accumulators, 3 weight vectors and one activation vector fill the 16
     * AVX2 registers, and each weight vector feeds 4 FMAs, each activation load 3.
     */
    private static void block4x3(float[] a, int r, int k, MemorySegment w, long w0, long rowBytes,
            float[] c, int n, int col) {
        long w1 = w0 + rowBytes;
        long w2 = w1 + rowBytes;
        int a0 = r * k;
        int a1 = a0 + k;
        int a2 = a1 + k;
        int a3 = a2 + k;
        FloatVector c00 = FloatVector.zero(F), c01 = FloatVector.zero(F), c02 = FloatVector.zero(F);
        FloatVector c10 = FloatVector.zero(F), c11 = FloatVector.zero(F), c12 = FloatVector.zero(F);
        FloatVector c20 = FloatVector.zero(F), c21 = FloatVector.zero(F), c22 = FloatVector.zero(F);
        FloatVector c30 = FloatVector.zero(F), c31 = FloatVector.zero(F), c32 = FloatVector.zero(F);
        int upper = F.loopBound(k);
        int i = 0;
        for (; i < upper; i += L) {
            long off = (long) i * 4;
            FloatVector b0 = load(w, w0 + off);
            FloatVector b1 = load(w, w1 + off);
            FloatVector b2 = load(w, w2 + off);
            FloatVector x = FloatVector.fromArray(F, a, a0 + i);
            c00 = x.fma(b0, c00);
            c01 = x.fma(b1, c01);
            c02 = x.fma(b2, c02);
            x = FloatVector.fromArray(F, a, a1 + i);
            c10 = x.fma(b0, c10);
            c11 = x.fma(b1, c11);
            c12 = x.fma(b2, c12);
            x = FloatVector.fromArray(F, a, a2 + i);
            c20 = x.fma(b0, c20);
            c21 = x.fma(b1, c21);
            c22 = x.fma(b2, c22);
            x = FloatVector.fromArray(F, a, a3 + i);
            c30 = x.fma(b0, c30);
            c31 = x.fma(b1, c31);
            c32 = x.fma(b2, c32);
        }
        float[] s = {
            c00.reduceLanes(VectorOperators.ADD), c01.reduceLanes(VectorOperators.ADD), c02.reduceLanes(VectorOperators.ADD),
            c10.reduceLanes(VectorOperators.ADD), c11.reduceLanes(VectorOperators.ADD), c12.reduceLanes(VectorOperators.ADD),
            c20.reduceLanes(VectorOperators.ADD), c21.reduceLanes(VectorOperators.ADD), c22.reduceLanes(VectorOperators.ADD),
            c30.reduceLanes(VectorOperators.ADD), c31.reduceLanes(VectorOperators.ADD), c32.reduceLanes(VectorOperators.ADD)
        };
        for (; i < k; i++) {
            long off = (long) i * 4;
            float b0 = w.get(FLOAT_LE, w0 + off);
            float b1 = w.get(FLOAT_LE, w1 + off);
            float b2 = w.get(FLOAT_LE, w2 + off);
            tail4x3(s, a[a0 + i], a[a1 + i], a[a2 + i], a[a3 + i], b0, b1, b2);
        }
        store4x3(s, c, r * n + col, n);
    }

    /**
     * {@link #block4x3} for bf16 weights, {@code 2L} values of k per step: the even-k half of three
     * weight rows against the first half of each packed activation block, then the odd-k half against
     * the second. The weights are loaded again for the odd half rather than kept, so the loop still
     * fits in 16 registers.
     */
    private static void block4x3Bf16(float[] a, int r, int k, MemorySegment w, long w0, long rowBytes,
            float[] c, int n, int col) {
        long w1 = w0 + rowBytes;
        long w2 = w1 + rowBytes;
        int a0 = r * k;
        int a1 = a0 + k;
        int a2 = a1 + k;
        int a3 = a2 + k;
        FloatVector c00 = FloatVector.zero(F), c01 = FloatVector.zero(F), c02 = FloatVector.zero(F);
        FloatVector c10 = FloatVector.zero(F), c11 = FloatVector.zero(F), c12 = FloatVector.zero(F);
        FloatVector c20 = FloatVector.zero(F), c21 = FloatVector.zero(F), c22 = FloatVector.zero(F);
        FloatVector c30 = FloatVector.zero(F), c31 = FloatVector.zero(F), c32 = FloatVector.zero(F);
        int upper = k - k % (2 * L);
        int i = 0;
        for (; i < upper; i += 2 * L) {
            long off = (long) i * 2;
            FloatVector b0 = even(pairs(w, w0 + off));
            FloatVector b1 = even(pairs(w, w1 + off));
            FloatVector b2 = even(pairs(w, w2 + off));
            FloatVector x = FloatVector.fromArray(F, a, a0 + i);
            c00 = x.fma(b0, c00);
            c01 = x.fma(b1, c01);
            c02 = x.fma(b2, c02);
            x = FloatVector.fromArray(F, a, a1 + i);
            c10 = x.fma(b0, c10);
            c11 = x.fma(b1, c11);
            c12 = x.fma(b2, c12);
            x = FloatVector.fromArray(F, a, a2 + i);
            c20 = x.fma(b0, c20);
            c21 = x.fma(b1, c21);
            c22 = x.fma(b2, c22);
            x = FloatVector.fromArray(F, a, a3 + i);
            c30 = x.fma(b0, c30);
            c31 = x.fma(b1, c31);
            c32 = x.fma(b2, c32);
            b0 = odd(pairs(w, w0 + off));
            b1 = odd(pairs(w, w1 + off));
            b2 = odd(pairs(w, w2 + off));
            x = FloatVector.fromArray(F, a, a0 + i + L);
            c00 = x.fma(b0, c00);
            c01 = x.fma(b1, c01);
            c02 = x.fma(b2, c02);
            x = FloatVector.fromArray(F, a, a1 + i + L);
            c10 = x.fma(b0, c10);
            c11 = x.fma(b1, c11);
            c12 = x.fma(b2, c12);
            x = FloatVector.fromArray(F, a, a2 + i + L);
            c20 = x.fma(b0, c20);
            c21 = x.fma(b1, c21);
            c22 = x.fma(b2, c22);
            x = FloatVector.fromArray(F, a, a3 + i + L);
            c30 = x.fma(b0, c30);
            c31 = x.fma(b1, c31);
            c32 = x.fma(b2, c32);
        }
        float[] s = {
            c00.reduceLanes(VectorOperators.ADD), c01.reduceLanes(VectorOperators.ADD), c02.reduceLanes(VectorOperators.ADD),
            c10.reduceLanes(VectorOperators.ADD), c11.reduceLanes(VectorOperators.ADD), c12.reduceLanes(VectorOperators.ADD),
            c20.reduceLanes(VectorOperators.ADD), c21.reduceLanes(VectorOperators.ADD), c22.reduceLanes(VectorOperators.ADD),
            c30.reduceLanes(VectorOperators.ADD), c31.reduceLanes(VectorOperators.ADD), c32.reduceLanes(VectorOperators.ADD)
        };
        for (; i < k; i++) {
            long off = (long) i * 2;
            tail4x3(s, a[a0 + i], a[a1 + i], a[a2 + i], a[a3 + i], bf16(w, w0 + off), bf16(w, w1 + off), bf16(w, w2 + off));
        }
        store4x3(s, c, r * n + col, n);
    }

    private static void tail4x3(float[] s, float x0, float x1, float x2, float x3, float b0, float b1, float b2) {
        s[0] += x0 * b0;
        s[1] += x0 * b1;
        s[2] += x0 * b2;
        s[3] += x1 * b0;
        s[4] += x1 * b1;
        s[5] += x1 * b2;
        s[6] += x2 * b0;
        s[7] += x2 * b1;
        s[8] += x2 * b2;
        s[9] += x3 * b0;
        s[10] += x3 * b1;
        s[11] += x3 * b2;
    }

    private static void store4x3(float[] s, float[] c, int o, int n) {
        for (int row = 0; row < 4; row++) {
            c[o + row * n] = s[3 * row];
            c[o + row * n + 1] = s[3 * row + 1];
            c[o + row * n + 2] = s[3 * row + 2];
        }
    }

    private static void block1x4(float[] a, int a0, int k, MemorySegment w, long w0, long rowBytes, float[] c, int out) {
        long w1 = w0 + rowBytes;
        long w2 = w1 + rowBytes;
        long w3 = w2 + rowBytes;
        FloatVector c0 = FloatVector.zero(F), c1 = FloatVector.zero(F);
        FloatVector c2 = FloatVector.zero(F), c3 = FloatVector.zero(F);
        int upper = F.loopBound(k);
        int i = 0;
        for (; i < upper; i += L) {
            long off = (long) i * 4;
            FloatVector x = FloatVector.fromArray(F, a, a0 + i);
            c0 = x.fma(load(w, w0 + off), c0);
            c1 = x.fma(load(w, w1 + off), c1);
            c2 = x.fma(load(w, w2 + off), c2);
            c3 = x.fma(load(w, w3 + off), c3);
        }
        float s0 = c0.reduceLanes(VectorOperators.ADD), s1 = c1.reduceLanes(VectorOperators.ADD);
        float s2 = c2.reduceLanes(VectorOperators.ADD), s3 = c3.reduceLanes(VectorOperators.ADD);
        for (; i < k; i++) {
            long off = (long) i * 4;
            float x = a[a0 + i];
            s0 += x * w.get(FLOAT_LE, w0 + off);
            s1 += x * w.get(FLOAT_LE, w1 + off);
            s2 += x * w.get(FLOAT_LE, w2 + off);
            s3 += x * w.get(FLOAT_LE, w3 + off);
        }
        c[out] = s0;
        c[out + 1] = s1;
        c[out + 2] = s2;
        c[out + 3] = s3;
    }

    /** {@link #block1x4} for bf16 weights and activations from {@link #splitPairs}. */
    private static void block1x4Bf16(float[] a, int a0, int k, MemorySegment w, long w0, long rowBytes, float[] c, int out) {
        long w1 = w0 + rowBytes;
        long w2 = w1 + rowBytes;
        long w3 = w2 + rowBytes;
        FloatVector c0 = FloatVector.zero(F), c1 = FloatVector.zero(F);
        FloatVector c2 = FloatVector.zero(F), c3 = FloatVector.zero(F);
        int upper = k - k % (2 * L);
        int i = 0;
        for (; i < upper; i += 2 * L) {
            long off = (long) i * 2;
            IntVector p0 = pairs(w, w0 + off);
            IntVector p1 = pairs(w, w1 + off);
            IntVector p2 = pairs(w, w2 + off);
            IntVector p3 = pairs(w, w3 + off);
            FloatVector x = FloatVector.fromArray(F, a, a0 + i);
            c0 = x.fma(even(p0), c0);
            c1 = x.fma(even(p1), c1);
            c2 = x.fma(even(p2), c2);
            c3 = x.fma(even(p3), c3);
            x = FloatVector.fromArray(F, a, a0 + i + L);
            c0 = x.fma(odd(p0), c0);
            c1 = x.fma(odd(p1), c1);
            c2 = x.fma(odd(p2), c2);
            c3 = x.fma(odd(p3), c3);
        }
        float s0 = c0.reduceLanes(VectorOperators.ADD), s1 = c1.reduceLanes(VectorOperators.ADD);
        float s2 = c2.reduceLanes(VectorOperators.ADD), s3 = c3.reduceLanes(VectorOperators.ADD);
        for (; i < k; i++) {
            long off = (long) i * 2;
            float x = a[a0 + i];
            s0 += x * bf16(w, w0 + off);
            s1 += x * bf16(w, w1 + off);
            s2 += x * bf16(w, w2 + off);
            s3 += x * bf16(w, w3 + off);
        }
        c[out] = s0;
        c[out + 1] = s1;
        c[out + 2] = s2;
        c[out + 3] = s3;
    }

    private static float dot(float[] a, int a0, int k, MemorySegment w, long w0) {
        FloatVector acc = FloatVector.zero(F);
        int upper = F.loopBound(k);
        int i = 0;
        for (; i < upper; i += L) {
            acc = FloatVector.fromArray(F, a, a0 + i).fma(load(w, w0 + (long) i * 4), acc);
        }
        float s = acc.reduceLanes(VectorOperators.ADD);
        for (; i < k; i++) {
            s += a[a0 + i] * w.get(FLOAT_LE, w0 + (long) i * 4);
        }
        return s;
    }

    /** {@link #dot} for bf16 weights and activations from {@link #splitPairs}. */
    private static float dotBf16(float[] a, int a0, int k, MemorySegment w, long w0) {
        FloatVector acc = FloatVector.zero(F);
        int upper = k - k % (2 * L);
        int i = 0;
        for (; i < upper; i += 2 * L) {
            IntVector p = pairs(w, w0 + (long) i * 2);
            acc = FloatVector.fromArray(F, a, a0 + i).fma(even(p), acc);
            acc = FloatVector.fromArray(F, a, a0 + i + L).fma(odd(p), acc);
        }
        float s = acc.reduceLanes(VectorOperators.ADD);
        for (; i < k; i++) {
            s += a[a0 + i] * bf16(w, w0 + (long) i * 2);
        }
        return s;
    }

    /**
     * FP8 weights are read as int lanes of four codes (k = 4j .. 4j+3 in lane j) and widened with
     * shifts and a mask, as bf16 pairs are (see {@link #splitPairs}): within every block of
     * {@code 4L} activations, the k ≡ 0 (mod 4) values come first, then k ≡ 1, 2 and 3; the tail after
     * the last whole block stays in place.
     */
    static float[] splitQuads(float[] a, int rows, int k) {
        float[] x = new float[rows * k];
        int upper = k - k % (4 * L);
        for (int r = 0; r < rows; r++) {
            int base = r * k;
            for (int b = 0; b < upper; b += 4 * L) {
                for (int j = 0; j < L; j++) {
                    for (int q = 0; q < 4; q++) {
                        x[base + b + q * L + j] = a[base + b + 4 * j + q];
                    }
                }
            }
            System.arraycopy(a, base + upper, x, base + upper, k - upper);
        }
        return x;
    }

    /**
     * Code {@code q} (0..3) of every lane of {@code quads}, widened to f32: the code is moved to the
     * top byte, then an arithmetic shift by 4 lands its exponent and mantissa bits in the f32's
     * (bits 20..26) and its sign in bit 31; the mask clears the rest. That reads the value 2^120 too
     * small for normal and subnormal codes alike, which one exact multiply puts right. (e4m3fn's NaN
     * codes would read as ±480; quantizers saturate at ±448 and never write them.)
     */
    private static FloatVector fp8(IntVector quads, int q) {
        IntVector top = q == 3 ? quads : quads.lanewise(VectorOperators.LSHL, 24 - 8 * q);
        return top.lanewise(VectorOperators.ASHR, 4).lanewise(VectorOperators.AND, 0x87f00000)
                .reinterpretAsFloats().mul(FP8_BIAS_FIX);
    }

    private static float fp8(MemorySegment w, long offset) {
        return Numerics.fromFp8(w.get(ValueLayout.JAVA_BYTE, offset));
    }

    /** Computes output columns [from, to) for all rows of FP8 weights and activations from {@link #splitQuads}. */
    private static void columnsFp8(float[] a, int rows, int k, MemorySegment w, boolean unused, float[] c, int n,
            int from, int to) {
        long rowBytes = k;
        int fullRows = rows & ~3;
        int rowTile = Math.max(4, (256 * 1024 / Math.max(1, k * 4)) & ~3);
        for (int r0 = 0; r0 < fullRows; r0 += rowTile) {
            int r1 = Math.min(fullRows, r0 + rowTile);
            int col = from;
            for (; col + 2 < to; col += 3) {
                for (int r = r0; r < r1; r += 4) {
                    block4x3Fp8(a, r, k, w, col * rowBytes, rowBytes, c, n, col);
                }
            }
            for (; col < to; col++) {
                for (int r = r0; r < r1; r++) {
                    c[r * n + col] = dotFp8(a, r * k, k, w, col * rowBytes);
                }
            }
        }
        for (int r = fullRows; r < rows; r++) {
            int col = from;
            for (; col + 3 < to; col += 4) {
                block1x4Fp8(a, r * k, k, w, col * rowBytes, rowBytes, c, r * n + col);
            }
            for (; col < to; col++) {
                c[r * n + col] = dotFp8(a, r * k, k, w, col * rowBytes);
            }
        }
    }

    /** {@link #block4x3} for FP8 weights: each int load of a weight row feeds four codes, widened one quarter at a time. */
    private static void block4x3Fp8(float[] a, int r, int k, MemorySegment w, long w0, long rowBytes,
            float[] c, int n, int col) {
        long w1 = w0 + rowBytes;
        long w2 = w1 + rowBytes;
        int a0 = r * k;
        int a1 = a0 + k;
        int a2 = a1 + k;
        int a3 = a2 + k;
        FloatVector c00 = FloatVector.zero(F), c01 = FloatVector.zero(F), c02 = FloatVector.zero(F);
        FloatVector c10 = FloatVector.zero(F), c11 = FloatVector.zero(F), c12 = FloatVector.zero(F);
        FloatVector c20 = FloatVector.zero(F), c21 = FloatVector.zero(F), c22 = FloatVector.zero(F);
        FloatVector c30 = FloatVector.zero(F), c31 = FloatVector.zero(F), c32 = FloatVector.zero(F);
        int upper = k - k % (4 * L);
        int i = 0;
        for (; i < upper; i += 4 * L) {
            for (int q = 0; q < 4; q++) {
                // Reloaded per quarter (an L1 hit) rather than kept, so the loop fits in 16 registers.
                FloatVector b0 = fp8(pairs(w, w0 + i), q);
                FloatVector b1 = fp8(pairs(w, w1 + i), q);
                FloatVector b2 = fp8(pairs(w, w2 + i), q);
                int at = i + q * L;
                FloatVector x = FloatVector.fromArray(F, a, a0 + at);
                c00 = x.fma(b0, c00);
                c01 = x.fma(b1, c01);
                c02 = x.fma(b2, c02);
                x = FloatVector.fromArray(F, a, a1 + at);
                c10 = x.fma(b0, c10);
                c11 = x.fma(b1, c11);
                c12 = x.fma(b2, c12);
                x = FloatVector.fromArray(F, a, a2 + at);
                c20 = x.fma(b0, c20);
                c21 = x.fma(b1, c21);
                c22 = x.fma(b2, c22);
                x = FloatVector.fromArray(F, a, a3 + at);
                c30 = x.fma(b0, c30);
                c31 = x.fma(b1, c31);
                c32 = x.fma(b2, c32);
            }
        }
        float[] s = {
            c00.reduceLanes(VectorOperators.ADD), c01.reduceLanes(VectorOperators.ADD), c02.reduceLanes(VectorOperators.ADD),
            c10.reduceLanes(VectorOperators.ADD), c11.reduceLanes(VectorOperators.ADD), c12.reduceLanes(VectorOperators.ADD),
            c20.reduceLanes(VectorOperators.ADD), c21.reduceLanes(VectorOperators.ADD), c22.reduceLanes(VectorOperators.ADD),
            c30.reduceLanes(VectorOperators.ADD), c31.reduceLanes(VectorOperators.ADD), c32.reduceLanes(VectorOperators.ADD)
        };
        for (; i < k; i++) {
            tail4x3(s, a[a0 + i], a[a1 + i], a[a2 + i], a[a3 + i], fp8(w, w0 + i), fp8(w, w1 + i), fp8(w, w2 + i));
        }
        store4x3(s, c, r * n + col, n);
    }

    /** {@link #block1x4} for FP8 weights and activations from {@link #splitQuads}. */
    private static void block1x4Fp8(float[] a, int a0, int k, MemorySegment w, long w0, long rowBytes, float[] c, int out) {
        long w1 = w0 + rowBytes;
        long w2 = w1 + rowBytes;
        long w3 = w2 + rowBytes;
        FloatVector c0 = FloatVector.zero(F), c1 = FloatVector.zero(F);
        FloatVector c2 = FloatVector.zero(F), c3 = FloatVector.zero(F);
        int upper = k - k % (4 * L);
        int i = 0;
        for (; i < upper; i += 4 * L) {
            IntVector p0 = pairs(w, w0 + i);
            IntVector p1 = pairs(w, w1 + i);
            IntVector p2 = pairs(w, w2 + i);
            IntVector p3 = pairs(w, w3 + i);
            for (int q = 0; q < 4; q++) {
                FloatVector x = FloatVector.fromArray(F, a, a0 + i + q * L);
                c0 = x.fma(fp8(p0, q), c0);
                c1 = x.fma(fp8(p1, q), c1);
                c2 = x.fma(fp8(p2, q), c2);
                c3 = x.fma(fp8(p3, q), c3);
            }
        }
        float s0 = c0.reduceLanes(VectorOperators.ADD), s1 = c1.reduceLanes(VectorOperators.ADD);
        float s2 = c2.reduceLanes(VectorOperators.ADD), s3 = c3.reduceLanes(VectorOperators.ADD);
        for (; i < k; i++) {
            float x = a[a0 + i];
            s0 += x * fp8(w, w0 + i);
            s1 += x * fp8(w, w1 + i);
            s2 += x * fp8(w, w2 + i);
            s3 += x * fp8(w, w3 + i);
        }
        c[out] = s0;
        c[out + 1] = s1;
        c[out + 2] = s2;
        c[out + 3] = s3;
    }

    /** {@link #dot} for FP8 weights and activations from {@link #splitQuads}. */
    private static float dotFp8(float[] a, int a0, int k, MemorySegment w, long w0) {
        FloatVector acc = FloatVector.zero(F);
        int upper = k - k % (4 * L);
        int i = 0;
        for (; i < upper; i += 4 * L) {
            IntVector p = pairs(w, w0 + i);
            for (int q = 0; q < 4; q++) {
                acc = FloatVector.fromArray(F, a, a0 + i + q * L).fma(fp8(p, q), acc);
            }
        }
        float s = acc.reduceLanes(VectorOperators.ADD);
        for (; i < k; i++) {
            s += a[a0 + i] * fp8(w, w0 + i);
        }
        return s;
    }

    /**
     * Runs every kernel path on small inputs until the JIT has compiled it, at most about
     * {@code budgetMillis}. Vector API code is very slow until C2 compiles it, so servers call this
     * before they report ready: otherwise the first real batches can take seconds.
     */
    public static void warmUp(long budgetMillis) {
        long deadline = System.nanoTime() + budgetMillis * 1_000_000L;
        try (java.lang.foreign.Arena arena = java.lang.foreign.Arena.ofConfined()) {
            int k = 67;
            int n = 37;
            float[] w = new float[n * k];
            for (int i = 0; i < w.length; i++) {
                w[i] = (i % 7) * 0.01f;
            }
            Tensor[] weights = {
                Tensor.of(arena, DType.BF16, new long[] {n, k}, w),
                Tensor.of(arena, DType.F32, new long[] {n, k}, w),
                Tensor.of(arena, DType.FP8_E4M3, new long[] {n, k}, w)
            };
            float[] a = new float[7 * k];
            float[] c = new float[7 * n];
            for (int iter = 0; iter < 4000 && System.nanoTime() < deadline; iter++) {
                for (Tensor t : weights) {
                    if (t.dtype() == DType.FP8_E4M3) {
                        columnsFp8(a, 7, k, t.data(), false, c, n, 0, n);
                    } else {
                        columns(a, 7, k, t.data(), t.dtype() == DType.BF16, c, n, 0, n);
                    }
                }
            }
        }
    }

    /** The reference the kernels are tested against: a plain triple loop, in double. */
    public static float[] naive(float[] a, int rows, int k, Tensor w) {
        int n = Math.toIntExact(w.dim(0));
        float[] c = new float[rows * n];
        for (int r = 0; r < rows; r++) {
            for (int j = 0; j < n; j++) {
                double s = 0;
                for (int i = 0; i < k; i++) {
                    s += (double) a[r * k + i] * w.getFloat((long) j * k + i);
                }
                c[r * n + j] = (float) s;
            }
        }
        return c;
    }
}
