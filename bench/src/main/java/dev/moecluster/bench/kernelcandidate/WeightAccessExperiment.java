package dev.moecluster.bench.kernelcandidate;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.management.ManagementFactory;
import java.lang.management.ThreadMXBean;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.SplittableRandom;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.ShortVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorSpecies;

/**
 * Why the Vector API GEMM trails the C kernel: the same bf16 4 × 2 and 4 × 3 micro-kernels (Gemm's
 * loop order and row tile, one thread, one GEMM of the FFN's gate shape) reading the weights from an
 * off-heap {@link MemorySegment} (as core does) or from a heap {@code short[]}. Timed by thread CPU
 * time, interleaved; prints GFLOP/s median [min, max]. AVX2 shapes (8 f32 lanes) are assumed.
 * Run: {@code java --add-modules jdk.incubator.vector -cp … WeightAccessExperiment [rows k n rounds]}.
 */
public final class WeightAccessExperiment {
    private static final VectorSpecies<Float> F = FloatVector.SPECIES_256;
    private static final VectorSpecies<Short> S = ShortVector.SPECIES_128;
    private static final VectorSpecies<Integer> I = IntVector.SPECIES_256;
    private static final int L = 8;

    private WeightAccessExperiment() {}

    private interface Gemm {
        void run(float[] a, int rows, int k, float[] c, int n);
    }

    public static void main(String[] args) {
        int rows = args.length > 0 ? Integer.parseInt(args[0]) : 256;
        int k = args.length > 1 ? Integer.parseInt(args[1]) : 2048;
        int n = args.length > 2 ? Integer.parseInt(args[2]) : 5632;
        int rounds = args.length > 3 ? Integer.parseInt(args[3]) : 7;
        SplittableRandom random = new SplittableRandom(7);
        float[] a = new float[rows * k];
        for (int i = 0; i < a.length; i++) {
            a[i] = (float) (random.nextDouble() - 0.5);
        }
        short[] heap = new short[n * k];
        for (int i = 0; i < heap.length; i++) {
            heap[i] = (short) (Float.floatToRawIntBits((float) (random.nextDouble() - 0.5)) >>> 16);
        }
        try (Arena arena = Arena.ofShared()) {
            MemorySegment seg = arena.allocate((long) heap.length * 2, 64);
            MemorySegment.copy(MemorySegment.ofArray(heap), 0, seg, 0, seg.byteSize());
            String[] names = {"segment 4x2", "short[] 4x2", "segment 4x3", "short[] 4x3"};
            Gemm[] gemms = {
                (x, r, kk, c, nn) -> columns(x, r, kk, c, nn, 2, (col, row) -> seg4x2(x, row, kk, seg, (long) col * kk * 2, c, nn, col)),
                (x, r, kk, c, nn) -> columns(x, r, kk, c, nn, 2, (col, row) -> heap4x2(x, row, kk, heap, col * kk, c, nn, col)),
                (x, r, kk, c, nn) -> columns(x, r, kk, c, nn, 3, (col, row) -> seg4x3(x, row, kk, seg, (long) col * kk * 2, c, nn, col)),
                (x, r, kk, c, nn) -> columns(x, r, kk, c, nn, 3, (col, row) -> heap4x3(x, row, kk, heap, col * kk, c, nn, col)),
            };
            ThreadMXBean threads = ManagementFactory.getThreadMXBean();
            List<List<Double>> rates = new ArrayList<>();
            float[][] outs = new float[gemms.length][rows * n];
            for (int g = 0; g < gemms.length; g++) {
                rates.add(new ArrayList<>());
                for (int w = 0; w < 3; w++) {
                    gemms[g].run(a, rows, k, outs[g], n);
                }
            }
            for (int round = 0; round < rounds; round++) {
                for (int j = 0; j < gemms.length; j++) {
                    int g = (round + j) % gemms.length;
                    long start = threads.getCurrentThreadCpuTime();
                    gemms[g].run(a, rows, k, outs[g], n);
                    long nanos = threads.getCurrentThreadCpuTime() - start;
                    rates.get(g).add(2.0 * rows * k * (n / 12 * 12) / nanos);
                }
            }
            System.out.printf(Locale.ROOT, "bf16 GEMM rows=%d k=%d n=%d, one thread, CPU time, %d rounds%n", rows, k, n, rounds);
            for (int g = 0; g < gemms.length; g++) {
                double[] v = rates.get(g).stream().mapToDouble(Double::doubleValue).sorted().toArray();
                float diff = 0;
                for (int i = 0; i < outs[0].length; i++) {
                    diff = Math.max(diff, Math.abs(outs[g][i] - outs[0][i]));
                }
                System.out.printf(Locale.ROOT, "%-12s %6.1f GFLOP/s [%5.1f, %5.1f]  max |diff| vs first %.2g%n",
                        names[g], v[v.length / 2], v[0], v[v.length - 1], diff);
            }
        }
    }

    private interface Block {
        void run(int col, int row);
    }

    /** Gemm.columns' loop order: a row tile of activations in L2, the weight rows of a block in L1. */
    private static void columns(float[] a, int rows, int k, float[] c, int n, int nr, Block block) {
        int rowTile = Math.max(4, (256 * 1024 / (k * 4)) & ~3);
        int usable = n / 12 * 12;
        for (int r0 = 0; r0 < (rows & ~3); r0 += rowTile) {
            int r1 = Math.min(rows & ~3, r0 + rowTile);
            for (int col = 0; col + nr <= usable; col += nr) {
                for (int r = r0; r < r1; r += 4) {
                    block.run(col, r);
                }
            }
        }
    }

    private static FloatVector widen(ShortVector s) {
        return ((IntVector) s.convertShape(VectorOperators.S2I, I, 0)).lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats();
    }

    private static FloatVector load(MemorySegment w, long offset) {
        return widen(ShortVector.fromMemorySegment(S, w, offset, ByteOrder.LITTLE_ENDIAN));
    }

    private static FloatVector load(short[] w, int index) {
        return widen(ShortVector.fromArray(S, w, index));
    }

    private static void seg4x2(float[] a, int r, int k, MemorySegment w, long w0, float[] c, int n, int col) {
        long w1 = w0 + 2L * k;
        FloatVector c00 = FloatVector.zero(F), c01 = FloatVector.zero(F), c10 = FloatVector.zero(F), c11 = FloatVector.zero(F);
        FloatVector c20 = FloatVector.zero(F), c21 = FloatVector.zero(F), c30 = FloatVector.zero(F), c31 = FloatVector.zero(F);
        int a0 = r * k;
        for (int i = 0; i < k; i += L) {
            FloatVector b0 = load(w, w0 + 2L * i), b1 = load(w, w1 + 2L * i);
            FloatVector x = FloatVector.fromArray(F, a, a0 + i);
            c00 = x.fma(b0, c00); c01 = x.fma(b1, c01);
            x = FloatVector.fromArray(F, a, a0 + k + i);
            c10 = x.fma(b0, c10); c11 = x.fma(b1, c11);
            x = FloatVector.fromArray(F, a, a0 + 2 * k + i);
            c20 = x.fma(b0, c20); c21 = x.fma(b1, c21);
            x = FloatVector.fromArray(F, a, a0 + 3 * k + i);
            c30 = x.fma(b0, c30); c31 = x.fma(b1, c31);
        }
        int o = r * n + col;
        c[o] = sum(c00); c[o + 1] = sum(c01);
        c[o + n] = sum(c10); c[o + n + 1] = sum(c11);
        c[o + 2 * n] = sum(c20); c[o + 2 * n + 1] = sum(c21);
        c[o + 3 * n] = sum(c30); c[o + 3 * n + 1] = sum(c31);
    }

    private static void heap4x2(float[] a, int r, int k, short[] w, int w0, float[] c, int n, int col) {
        int w1 = w0 + k;
        FloatVector c00 = FloatVector.zero(F), c01 = FloatVector.zero(F), c10 = FloatVector.zero(F), c11 = FloatVector.zero(F);
        FloatVector c20 = FloatVector.zero(F), c21 = FloatVector.zero(F), c30 = FloatVector.zero(F), c31 = FloatVector.zero(F);
        int a0 = r * k;
        for (int i = 0; i < k; i += L) {
            FloatVector b0 = load(w, w0 + i), b1 = load(w, w1 + i);
            FloatVector x = FloatVector.fromArray(F, a, a0 + i);
            c00 = x.fma(b0, c00); c01 = x.fma(b1, c01);
            x = FloatVector.fromArray(F, a, a0 + k + i);
            c10 = x.fma(b0, c10); c11 = x.fma(b1, c11);
            x = FloatVector.fromArray(F, a, a0 + 2 * k + i);
            c20 = x.fma(b0, c20); c21 = x.fma(b1, c21);
            x = FloatVector.fromArray(F, a, a0 + 3 * k + i);
            c30 = x.fma(b0, c30); c31 = x.fma(b1, c31);
        }
        int o = r * n + col;
        c[o] = sum(c00); c[o + 1] = sum(c01);
        c[o + n] = sum(c10); c[o + n + 1] = sum(c11);
        c[o + 2 * n] = sum(c20); c[o + 2 * n + 1] = sum(c21);
        c[o + 3 * n] = sum(c30); c[o + 3 * n + 1] = sum(c31);
    }

    private static void seg4x3(float[] a, int r, int k, MemorySegment w, long w0, float[] c, int n, int col) {
        long w1 = w0 + 2L * k, w2 = w1 + 2L * k;
        FloatVector c00 = FloatVector.zero(F), c01 = FloatVector.zero(F), c02 = FloatVector.zero(F);
        FloatVector c10 = FloatVector.zero(F), c11 = FloatVector.zero(F), c12 = FloatVector.zero(F);
        FloatVector c20 = FloatVector.zero(F), c21 = FloatVector.zero(F), c22 = FloatVector.zero(F);
        FloatVector c30 = FloatVector.zero(F), c31 = FloatVector.zero(F), c32 = FloatVector.zero(F);
        int a0 = r * k;
        for (int i = 0; i < k; i += L) {
            FloatVector b0 = load(w, w0 + 2L * i), b1 = load(w, w1 + 2L * i), b2 = load(w, w2 + 2L * i);
            FloatVector x = FloatVector.fromArray(F, a, a0 + i);
            c00 = x.fma(b0, c00); c01 = x.fma(b1, c01); c02 = x.fma(b2, c02);
            x = FloatVector.fromArray(F, a, a0 + k + i);
            c10 = x.fma(b0, c10); c11 = x.fma(b1, c11); c12 = x.fma(b2, c12);
            x = FloatVector.fromArray(F, a, a0 + 2 * k + i);
            c20 = x.fma(b0, c20); c21 = x.fma(b1, c21); c22 = x.fma(b2, c22);
            x = FloatVector.fromArray(F, a, a0 + 3 * k + i);
            c30 = x.fma(b0, c30); c31 = x.fma(b1, c31); c32 = x.fma(b2, c32);
        }
        int o = r * n + col;
        c[o] = sum(c00); c[o + 1] = sum(c01); c[o + 2] = sum(c02);
        c[o + n] = sum(c10); c[o + n + 1] = sum(c11); c[o + n + 2] = sum(c12);
        c[o + 2 * n] = sum(c20); c[o + 2 * n + 1] = sum(c21); c[o + 2 * n + 2] = sum(c22);
        c[o + 3 * n] = sum(c30); c[o + 3 * n + 1] = sum(c31); c[o + 3 * n + 2] = sum(c32);
    }

    private static void heap4x3(float[] a, int r, int k, short[] w, int w0, float[] c, int n, int col) {
        int w1 = w0 + k, w2 = w1 + k;
        FloatVector c00 = FloatVector.zero(F), c01 = FloatVector.zero(F), c02 = FloatVector.zero(F);
        FloatVector c10 = FloatVector.zero(F), c11 = FloatVector.zero(F), c12 = FloatVector.zero(F);
        FloatVector c20 = FloatVector.zero(F), c21 = FloatVector.zero(F), c22 = FloatVector.zero(F);
        FloatVector c30 = FloatVector.zero(F), c31 = FloatVector.zero(F), c32 = FloatVector.zero(F);
        int a0 = r * k;
        for (int i = 0; i < k; i += L) {
            FloatVector b0 = load(w, w0 + i), b1 = load(w, w1 + i), b2 = load(w, w2 + i);
            FloatVector x = FloatVector.fromArray(F, a, a0 + i);
            c00 = x.fma(b0, c00); c01 = x.fma(b1, c01); c02 = x.fma(b2, c02);
            x = FloatVector.fromArray(F, a, a0 + k + i);
            c10 = x.fma(b0, c10); c11 = x.fma(b1, c11); c12 = x.fma(b2, c12);
            x = FloatVector.fromArray(F, a, a0 + 2 * k + i);
            c20 = x.fma(b0, c20); c21 = x.fma(b1, c21); c22 = x.fma(b2, c22);
            x = FloatVector.fromArray(F, a, a0 + 3 * k + i);
            c30 = x.fma(b0, c30); c31 = x.fma(b1, c31); c32 = x.fma(b2, c32);
        }
        int o = r * n + col;
        c[o] = sum(c00); c[o + 1] = sum(c01); c[o + 2] = sum(c02);
        c[o + n] = sum(c10); c[o + n + 1] = sum(c11); c[o + n + 2] = sum(c12);
        c[o + 2 * n] = sum(c20); c[o + 2 * n + 1] = sum(c21); c[o + 2 * n + 2] = sum(c22);
        c[o + 3 * n] = sum(c30); c[o + 3 * n + 1] = sum(c31); c[o + 3 * n + 2] = sum(c32);
    }

    private static float sum(FloatVector v) {
        return v.reduceLanes(VectorOperators.ADD);
    }
}
