package dev.moecluster.core.kernel;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.moecluster.core.tensor.DType;
import dev.moecluster.core.tensor.Tensor;
import java.lang.foreign.Arena;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

class GemmTest {

    private static float[] gaussian(int n, SplittableRandom r) {
        float[] v = new float[n];
        for (int i = 0; i < n; i++) {
            v[i] = (float) r.nextGaussian();
        }
        return v;
    }

    /**
     * Rows hit the 4-row blocks and the 1-row remainder (1..5, 7, 16, 33); k hits vector-multiple and
     * tail lengths for 8- and 16-lane vectors (1, 13, 16, 67, 256); n hits odd counts, fewer than 8
     * (the single-threaded path) and enough work to fork (64 x 256 x 512).
     */
    static Stream<Arguments> shapes() {
        List<Arguments> a = new ArrayList<>();
        for (DType dtype : new DType[] {DType.F32, DType.BF16, DType.FP8_E4M3}) {
            for (int rows : new int[] {1, 2, 3, 4, 5, 7, 16, 33}) {
                for (int[] kn : new int[][] {{13, 5}, {67, 9}, {16, 8}, {1, 3}, {256, 31}, {64, 1}, {33, 7}, {47, 4}}) {
                    a.add(Arguments.of(dtype, rows, kn[0], kn[1]));
                }
            }
            a.add(Arguments.of(dtype, 64, 256, 512));
            a.add(Arguments.of(dtype, 33, 67, 1001)); // parallel with ragged column split and tails everywhere
            a.add(Arguments.of(dtype, 1, 4096, 515)); // batch-1 GEMV across threads
            a.add(Arguments.of(dtype, 6, 2000, 100)); // k large enough to shrink the row tile
        }
        return a.stream();
    }

    @ParameterizedTest(name = "{0} rows={1} k={2} n={3}")
    @MethodSource("shapes")
    void matmulTransposedMatchesTheNaiveTripleLoop(DType dtype, int rows, int k, int n) {
        SplittableRandom r = new SplittableRandom(rows * 1_000_003L + k * 101L + n);
        float[] a = gaussian(rows * k, r);
        // Shared, as checkpoint weights are, so large shapes take the parallel path.
        try (Arena arena = Arena.ofShared()) {
            Tensor w = Tensor.of(arena, dtype, new long[] {n, k}, gaussian(n * k, r));
            float[] c = new float[rows * n];
            java.util.Arrays.fill(c, Float.NaN); // every output must be written
            Gemm.matmulTransposed(a, rows, k, w, c);
            assertMatchesNaive(a, rows, k, w, c);
        }
    }

    /** Each output within 1e-5 of the sum of |a·w| terms, so cancellation in the dot product cannot fail it. */
    private static void assertMatchesNaive(float[] a, int rows, int k, Tensor w, float[] c) {
        int n = (int) w.dim(0);
        float[] expected = Gemm.naive(a, rows, k, w);
        for (int i = 0; i < rows; i++) {
            for (int j = 0; j < n; j++) {
                double scale = 0;
                for (int x = 0; x < k; x++) {
                    scale += Math.abs((double) a[i * k + x] * w.getFloat((long) j * k + x));
                }
                double err = Math.abs((double) c[i * n + j] - expected[i * n + j]);
                assertThat(err).as("c[%d][%d] = %s, naive %s", i, j, c[i * n + j], expected[i * n + j])
                        .isLessThanOrEqualTo(1e-5 * scale + 1e-30); // NaN fails too
            }
        }
    }

    @Test
    void weightsInAConfinedArenaWorkForShapesLargeEnoughToGoParallel() {
        SplittableRandom r = new SplittableRandom(5);
        int rows = 64, k = 256, n = 512;
        float[] a = gaussian(rows * k, r);
        float[] values = gaussian(n * k, r);
        float[] c = new float[rows * n];
        try (Arena confined = Arena.ofConfined()) {
            // Before the fix, the pool's threads failed with WrongThreadException on confined memory.
            Tensor w = Tensor.of(confined, DType.BF16, new long[] {n, k}, values);
            Gemm.matmulTransposed(a, rows, k, w, c);
            assertMatchesNaive(a, rows, k, w, c);
        }
    }

    @Test
    void naiveComputesTheDefinitionExactlyOnSmallIntegers() {
        try (Arena arena = Arena.ofConfined()) {
            // W = [[1 2 3], [4 5 6]] (n=2, k=3); A = [[1 0 -1], [2 1 0]]
            Tensor w = Tensor.of(arena, DType.F32, new long[] {2, 3}, new float[] {1, 2, 3, 4, 5, 6});
            float[] a = {1, 0, -1, 2, 1, 0};
            // C = A · Wᵀ = [[1-3, 4-6], [2+2, 8+5]]
            assertThat(Gemm.naive(a, 2, 3, w)).containsExactly(-2, -2, 4, 13);
            float[] c = new float[4];
            Gemm.matmulTransposed(a, 2, 3, w, c);
            assertThat(c).containsExactly(-2, -2, 4, 13);
        }
    }

    @Test
    void bf16WeightsAreUsedAsStoredWithoutF32Rounding() {
        try (Arena arena = Arena.ofConfined()) {
            // 1/3 is stored as bf16 0.333984375; the product must use that value exactly.
            Tensor w = Tensor.of(arena, DType.BF16, new long[] {1, 16}, filled(16, 1f / 3f));
            float[] c = new float[1];
            Gemm.matmulTransposed(filled(16, 1f), 1, 16, w, c);
            assertThat(c[0]).isEqualTo(16 * 0.333984375f);
        }
    }

    @Test
    void fp8WeightsWidenEveryCodeToItsExactValue() {
        // Weight row j holds all 256 codes rotated by j (the two NaN codes replaced by zero); one-hot rows
        // of A read each weight back alone, through the 4x3, 1x4 and single-column kernels.
        int k = 256;
        int n = 5;
        try (Arena arena = Arena.ofConfined()) {
            java.lang.foreign.MemorySegment seg = arena.allocate((long) n * k);
            for (int j = 0; j < n; j++) {
                for (int i = 0; i < k; i++) {
                    int code = (i + 37 * j) & 0xff;
                    seg.set(java.lang.foreign.ValueLayout.JAVA_BYTE, (long) j * k + i,
                            (byte) ((code & 0x7f) == 0x7f ? 0 : code));
                }
            }
            Tensor w = new Tensor(DType.FP8_E4M3, new long[] {n, k}, seg);
            for (int rows : new int[] {k, 3}) { // 256: the 4-row blocks; 3: the single-row kernels
                float[] a = new float[rows * k];
                for (int r = 0; r < rows; r++) {
                    a[r * k + r] = 1f;
                }
                float[] c = new float[rows * n];
                Gemm.matmulTransposed(a, rows, k, w, c);
                for (int r = 0; r < rows; r++) {
                    for (int j = 0; j < n; j++) {
                        assertThat(c[r * n + j]).as("row %d, weight row %d", r, j).isEqualTo(w.getFloat((long) j * k + r));
                    }
                }
            }
        }
    }

    private static float[] filled(int n, float v) {
        float[] a = new float[n];
        java.util.Arrays.fill(a, v);
        return a;
    }

    @Test
    void largerOutputBuffersAreWrittenOnlyInTheirFirstRowsTimesN() {
        try (Arena arena = Arena.ofConfined()) {
            Tensor w = Tensor.of(arena, DType.F32, new long[] {3, 2}, new float[] {1, 0, 0, 1, 1, 1});
            float[] c = filled(10, 7f);
            Gemm.matmulTransposed(new float[] {2, 3, 99, 99}, 1, 2, w, c);
            assertThat(c).containsExactly(2, 3, 5, 7, 7, 7, 7, 7, 7, 7);
        }
    }

    @Test
    void zeroRowsIsANoOp() {
        try (Arena arena = Arena.ofConfined()) {
            Tensor w = Tensor.of(arena, DType.F32, new long[] {3, 2}, new float[6]);
            Gemm.matmulTransposed(new float[0], 0, 2, w, new float[0]);
        }
    }

    @Test
    void rejectsMismatchedShapesBuffersAndDtypes() {
        try (Arena arena = Arena.ofConfined()) {
            Tensor w = Tensor.of(arena, DType.F32, new long[] {3, 4}, new float[12]);
            assertThatThrownBy(() -> Gemm.matmulTransposed(new float[5], 1, 5, w, new float[3]))
                    .isInstanceOf(IllegalArgumentException.class)
                    .hasMessageContaining("width 5");
            assertThatThrownBy(() -> Gemm.matmulTransposed(new float[7], 2, 4, w, new float[6]))
                    .isInstanceOf(IllegalArgumentException.class)
                    .hasMessageContaining("too small");
            assertThatThrownBy(() -> Gemm.matmulTransposed(new float[8], 2, 4, w, new float[5]))
                    .isInstanceOf(IllegalArgumentException.class)
                    .hasMessageContaining("too small");
            Tensor f16 = Tensor.of(arena, DType.F16, new long[] {3, 4}, new float[12]);
            assertThatThrownBy(() -> Gemm.matmulTransposed(new float[4], 1, 4, f16, new float[3]))
                    .isInstanceOf(IllegalArgumentException.class)
                    .hasMessageContaining("f32 or bf16");
            Tensor rank3 = Tensor.of(arena, DType.F32, new long[] {1, 3, 4}, new float[12]);
            assertThatThrownBy(() -> Gemm.matmulTransposed(new float[4], 1, 4, rank3, new float[3]))
                    .isInstanceOf(IllegalArgumentException.class);
        }
    }

    /**
     * A NaN in one weight, at an even and at an odd k of a bf16 pair, in a whole vector block and in the
     * tail, reaches exactly the outputs that use that weight; a NaN activation reaches its whole row.
     * FP8 weights get only the NaN activation: the kernel widens e4m3fn's NaN codes as ±480 (quantizers
     * saturate at ±448 and never write them).
     */
    @ParameterizedTest(name = "{0} rows={1} k={2} n={3}")
    @MethodSource("nanShapes")
    void nanInAWeightOrActivationReachesExactlyTheOutputsThatUseIt(DType dtype, int rows, int k, int n) {
        SplittableRandom r = new SplittableRandom(k * 31L + n);
        for (int nanK : new int[] {0, 1, k / 2, k - 1}) {
            float[] values = gaussian(n * k, r);
            int nanCol = dtype == DType.FP8_E4M3 ? -1 : n / 2;
            if (nanCol >= 0) {
                values[nanCol * k + nanK] = Float.NaN;
            }
            float[] a = gaussian(rows * k, r);
            int nanRow = rows - 1;
            a[nanRow * k + (k - 1 - nanK)] = Float.NaN;
            try (Arena arena = Arena.ofShared()) {
                Tensor w = Tensor.of(arena, dtype, new long[] {n, k}, values);
                float[] c = new float[rows * n];
                Gemm.matmulTransposed(a, rows, k, w, c);
                for (int i = 0; i < rows; i++) {
                    for (int j = 0; j < n; j++) {
                        boolean expectNaN = i == nanRow || j == nanCol;
                        assertThat(Float.isNaN(c[i * n + j])).as("c[%d][%d] = %s (NaN at k=%d)", i, j, c[i * n + j], nanK)
                                .isEqualTo(expectNaN);
                    }
                }
            }
        }
    }

    static Stream<Arguments> nanShapes() {
        List<Arguments> a = new ArrayList<>();
        for (DType dtype : new DType[] {DType.F32, DType.BF16, DType.FP8_E4M3}) {
            a.add(Arguments.of(dtype, 1, 37, 9));
            a.add(Arguments.of(dtype, 5, 64, 7));
            a.add(Arguments.of(dtype, 8, 35, 13));
        }
        return a.stream();
    }

    @Test
    void splitPairsPutsEvenThenOddValuesOfEveryWholeBlockAndLeavesTheTail() {
        int k = 2 * 16 * 2 + 5; // two whole blocks of the widest lanes (16 floats, 32 per block) and a tail
        float[] a = new float[2 * k];
        for (int i = 0; i < a.length; i++) {
            a[i] = i;
        }
        float[] x = Gemm.splitPairs(a, 2, k);
        int block = 2 * Gemm.lanes();
        int upper = k - k % block;
        for (int row = 0; row < 2; row++) {
            for (int b = 0; b < upper; b += block) {
                for (int j = 0; j < block / 2; j++) {
                    assertThat(x[row * k + b + j]).isEqualTo(a[row * k + b + 2 * j]);
                    assertThat(x[row * k + b + block / 2 + j]).isEqualTo(a[row * k + b + 2 * j + 1]);
                }
            }
            for (int i = upper; i < k; i++) {
                assertThat(x[row * k + i]).isEqualTo(a[row * k + i]);
            }
        }
    }

    @Test
    void parallelismIsAtLeastOne() {
        assertThat(Gemm.parallelism()).isPositive();
    }
}
