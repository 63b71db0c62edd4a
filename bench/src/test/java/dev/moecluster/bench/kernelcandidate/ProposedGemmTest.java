package dev.moecluster.bench.kernelcandidate;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.within;

import dev.moecluster.core.kernel.Gemm;
import dev.moecluster.core.tensor.DType;
import dev.moecluster.core.tensor.Tensor;
import java.lang.foreign.Arena;
import java.util.SplittableRandom;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

class ProposedGemmTest {
    @ParameterizedTest(name = "{0} rows={1} k={2} n={3}")
    @CsvSource({
        // edges of the 4-row, 3-column and 8-lane blocks, and shapes big enough to split across threads
        "BF16, 1, 7, 1", "BF16, 3, 16, 2", "BF16, 4, 37, 3", "BF16, 5, 40, 5", "BF16, 8, 64, 13",
        "BF16, 13, 300, 200", "BF16, 17, 129, 301", "F32, 1, 7, 1", "F32, 4, 37, 3", "F32, 9, 77, 25",
        "F32, 13, 300, 200", "F32, 2, 1024, 999"})
    void matchesTheNaiveProduct(DType dtype, int rows, int k, int n) {
        // Shared: the larger shapes are split across the GEMM's pool threads.
        try (Arena arena = Arena.ofShared()) {
            SplittableRandom random = new SplittableRandom(rows * 31L + k * 7L + n);
            float[] a = new float[rows * k];
            float[] w = new float[n * k];
            for (int i = 0; i < a.length; i++) {
                a[i] = (float) (random.nextDouble() * 2 - 1);
            }
            for (int i = 0; i < w.length; i++) {
                w[i] = (float) (random.nextDouble() * 2 - 1);
            }
            Tensor weight = Tensor.of(arena, dtype, new long[] {n, k}, w);
            float[] expected = Gemm.naive(a, rows, k, weight);
            float[] actual = new float[rows * n];
            ProposedGemm.matmulTransposed(a, rows, k, weight, actual);
            for (int i = 0; i < expected.length; i++) {
                assertThat(actual[i]).as("element %d", i).isCloseTo(expected[i], within(1e-4f * k));
            }
        }
    }
}
