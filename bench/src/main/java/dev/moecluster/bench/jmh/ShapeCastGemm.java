package dev.moecluster.bench.jmh;

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
import jdk.incubator.vector.ShortVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorShape;
import jdk.incubator.vector.VectorSpecies;

/**
 * core's {@code Gemm} as it was before bf16 weights were split from int lanes: it widens them with the
 * ShortVector S2I shape-changing cast. Kept only as the baseline of the A/B in bench/RESULTS.md.
 */
final class ShapeCastGemm {
    private static final VectorSpecies<Float> F = FloatVector.SPECIES_PREFERRED;
    private static final VectorSpecies<Short> S =
            VectorSpecies.of(short.class, VectorShape.forBitSize(F.vectorBitSize() / 2));
    private static final VectorSpecies<Integer> I = IntVector.SPECIES_PREFERRED;
    private static final int L = F.length();
    private static final ValueLayout.OfShort SHORT_LE = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfFloat FLOAT_LE = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    /** Below this many multiply-adds a GEMM runs on the calling thread: forking costs more. */
    private static final long PARALLEL_THRESHOLD = 1L << 18;

    private static final ForkJoinPool POOL = new ForkJoinPool(Runtime.getRuntime().availableProcessors(),
            pool -> {
                var t = ForkJoinPool.defaultForkJoinWorkerThreadFactory.newThread(pool);
                t.setName("moe-gemm-s2i-" + t.getPoolIndex());
                t.setDaemon(true);
                return t;
            }, null, false);

    /** Never started. Memory of a confined arena is accessible only by its owner, so never by this thread. */
    private static final Thread NOT_THE_OWNER = Thread.ofPlatform().unstarted(() -> {});

    private ShapeCastGemm() {}

    /** The number of threads GEMMs are split across. */
    public static int parallelism() {
        return POOL.getParallelism();
    }

    /**
     * {@code c[r][n] = Σ_k a[r][k] · w[n][k]} for {@code rows} rows; {@code a} is {@code rows × k},
     * {@code c} is {@code rows × N}, both row-major from index 0.
     */
    public static void matmulTransposed(float[] a, int rows, int k, Tensor w, float[] c) {
        if (w.rank() != 2 || w.dim(1) != k) {
            throw new IllegalArgumentException("weight " + w + " does not take inputs of width " + k);
        }
        int n = Math.toIntExact(w.dim(0));
        if (a.length < rows * k || c.length < rows * n) {
            throw new IllegalArgumentException("buffers too small for " + rows + " rows");
        }
        boolean bf16 = switch (w.dtype()) {
            case BF16 -> true;
            case F32 -> false;
            default -> throw new IllegalArgumentException("GEMM weights must be f32 or bf16, got " + w.dtype());
        };
        MemorySegment seg = w.data();
        long work = (long) rows * n * k;
        int threads = POOL.getParallelism();
        // Weights in a confined arena cannot be read by the pool's threads: multiply them on this one.
        if (work < PARALLEL_THRESHOLD || threads == 1 || n < 8 || !seg.isAccessibleBy(NOT_THE_OWNER)) {
            columns(a, rows, k, seg, bf16, c, n, 0, n);
            return;
        }
        int parts = Math.min(threads * 2, n / 4);
        List<ForkJoinTask<?>> tasks = new ArrayList<>(parts);
        for (int p = 0; p < parts; p++) {
            // Multiples of 12 suit both the 3-column and the 4-column micro-kernels.
            int from = (int) ((long) n * p / parts) / 12 * 12;
            int to = p == parts - 1 ? n : (int) ((long) n * (p + 1) / parts) / 12 * 12;
            if (from < to) {
                tasks.add(POOL.submit(() -> columns(a, rows, k, seg, bf16, c, n, from, to)));
            }
        }
        for (ForkJoinTask<?> t : tasks) {
            t.join();
        }
    }

    /** Computes output columns [from, to) for all rows. */
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
                    block4x3(a, r, k, w, col * rowBytes, rowBytes, bf16, c, n, col);
                }
            }
            for (; col < to; col++) {
                for (int r = r0; r < r1; r++) {
                    c[r * n + col] = dot(a, r * k, k, w, col * rowBytes, bf16);
                }
            }
        }
        for (int r = fullRows; r < rows; r++) {
            int col = from;
            for (; col + 3 < to; col += 4) {
                block1x4(a, r * k, k, w, col * rowBytes, rowBytes, bf16, c, r * n + col);
            }
            for (; col < to; col++) {
                c[r * n + col] = dot(a, r * k, k, w, col * rowBytes, bf16);
            }
        }
    }

    private static FloatVector load(MemorySegment w, long offset, boolean bf16) {
        if (bf16) {
            ShortVector s = ShortVector.fromMemorySegment(S, w, offset, ByteOrder.LITTLE_ENDIAN);
            IntVector i = (IntVector) s.convertShape(VectorOperators.S2I, I, 0);
            return i.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats();
        }
        return FloatVector.fromMemorySegment(F, w, offset, ByteOrder.LITTLE_ENDIAN);
    }

    private static float scalar(MemorySegment w, long offset, boolean bf16) {
        return bf16 ? Numerics.fromBf16(w.get(SHORT_LE, offset)) : w.get(FLOAT_LE, offset);
    }

    /**
     * 4 rows × 3 weight rows: 12 accumulators, 3 weight vectors and one activation vector fill the 16
     * AVX2 registers, and each widened weight vector feeds 4 FMAs, each activation load 3.
     */
    private static void block4x3(float[] a, int r, int k, MemorySegment w, long w0, long rowBytes, boolean bf16,
            float[] c, int n, int col) {
        int es = bf16 ? 2 : 4;
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
            long off = (long) i * es;
            FloatVector b0 = load(w, w0 + off, bf16);
            FloatVector b1 = load(w, w1 + off, bf16);
            FloatVector b2 = load(w, w2 + off, bf16);
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
        float s00 = c00.reduceLanes(VectorOperators.ADD), s01 = c01.reduceLanes(VectorOperators.ADD);
        float s02 = c02.reduceLanes(VectorOperators.ADD);
        float s10 = c10.reduceLanes(VectorOperators.ADD), s11 = c11.reduceLanes(VectorOperators.ADD);
        float s12 = c12.reduceLanes(VectorOperators.ADD);
        float s20 = c20.reduceLanes(VectorOperators.ADD), s21 = c21.reduceLanes(VectorOperators.ADD);
        float s22 = c22.reduceLanes(VectorOperators.ADD);
        float s30 = c30.reduceLanes(VectorOperators.ADD), s31 = c31.reduceLanes(VectorOperators.ADD);
        float s32 = c32.reduceLanes(VectorOperators.ADD);
        for (; i < k; i++) {
            long off = (long) i * es;
            float b0 = scalar(w, w0 + off, bf16);
            float b1 = scalar(w, w1 + off, bf16);
            float b2 = scalar(w, w2 + off, bf16);
            s00 += a[a0 + i] * b0;
            s01 += a[a0 + i] * b1;
            s02 += a[a0 + i] * b2;
            s10 += a[a1 + i] * b0;
            s11 += a[a1 + i] * b1;
            s12 += a[a1 + i] * b2;
            s20 += a[a2 + i] * b0;
            s21 += a[a2 + i] * b1;
            s22 += a[a2 + i] * b2;
            s30 += a[a3 + i] * b0;
            s31 += a[a3 + i] * b1;
            s32 += a[a3 + i] * b2;
        }
        int o = r * n + col;
        c[o] = s00;
        c[o + 1] = s01;
        c[o + 2] = s02;
        c[o + n] = s10;
        c[o + n + 1] = s11;
        c[o + n + 2] = s12;
        c[o + 2 * n] = s20;
        c[o + 2 * n + 1] = s21;
        c[o + 2 * n + 2] = s22;
        c[o + 3 * n] = s30;
        c[o + 3 * n + 1] = s31;
        c[o + 3 * n + 2] = s32;
    }

    private static void block1x4(float[] a, int a0, int k, MemorySegment w, long w0, long rowBytes, boolean bf16,
            float[] c, int out) {
        int es = bf16 ? 2 : 4;
        long w1 = w0 + rowBytes;
        long w2 = w1 + rowBytes;
        long w3 = w2 + rowBytes;
        FloatVector c0 = FloatVector.zero(F), c1 = FloatVector.zero(F);
        FloatVector c2 = FloatVector.zero(F), c3 = FloatVector.zero(F);
        int upper = F.loopBound(k);
        int i = 0;
        for (; i < upper; i += L) {
            long off = (long) i * es;
            FloatVector x = FloatVector.fromArray(F, a, a0 + i);
            c0 = x.fma(load(w, w0 + off, bf16), c0);
            c1 = x.fma(load(w, w1 + off, bf16), c1);
            c2 = x.fma(load(w, w2 + off, bf16), c2);
            c3 = x.fma(load(w, w3 + off, bf16), c3);
        }
        float s0 = c0.reduceLanes(VectorOperators.ADD), s1 = c1.reduceLanes(VectorOperators.ADD);
        float s2 = c2.reduceLanes(VectorOperators.ADD), s3 = c3.reduceLanes(VectorOperators.ADD);
        for (; i < k; i++) {
            long off = (long) i * es;
            float x = a[a0 + i];
            s0 += x * scalar(w, w0 + off, bf16);
            s1 += x * scalar(w, w1 + off, bf16);
            s2 += x * scalar(w, w2 + off, bf16);
            s3 += x * scalar(w, w3 + off, bf16);
        }
        c[out] = s0;
        c[out + 1] = s1;
        c[out + 2] = s2;
        c[out + 3] = s3;
    }

    private static float dot(float[] a, int a0, int k, MemorySegment w, long w0, boolean bf16) {
        int es = bf16 ? 2 : 4;
        FloatVector acc = FloatVector.zero(F);
        int upper = F.loopBound(k);
        int i = 0;
        for (; i < upper; i += L) {
            acc = FloatVector.fromArray(F, a, a0 + i).fma(load(w, w0 + (long) i * es, bf16), acc);
        }
        float s = acc.reduceLanes(VectorOperators.ADD);
        for (; i < k; i++) {
            s += a[a0 + i] * scalar(w, w0 + (long) i * es, bf16);
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
                Tensor.of(arena, dev.moecluster.core.tensor.DType.BF16, new long[] {n, k}, w),
                Tensor.of(arena, dev.moecluster.core.tensor.DType.F32, new long[] {n, k}, w)
            };
            float[] a = new float[7 * k];
            float[] c = new float[7 * n];
            for (int iter = 0; iter < 4000 && System.nanoTime() < deadline; iter++) {
                for (Tensor t : weights) {
                    columns(a, 7, k, t.data(), t.dtype() == dev.moecluster.core.tensor.DType.BF16, c, n, 0, n);
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
