package dev.moecluster.bench.nativekernel;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.within;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.moecluster.core.kernel.Gemm;
import dev.moecluster.core.tensor.DType;
import dev.moecluster.core.tensor.Tensor;
import java.lang.foreign.Arena;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.SplittableRandom;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/** Runs only where bench/native/build.sh has built the library (it needs gcc and AVX2). */
class NativeGemmTest {
    @ParameterizedTest(name = "{0} {1} rows={2} k={3} n={4}")
    @CsvSource({
        "FOUR_BY_TWO, BF16, 1, 7, 1", "FOUR_BY_TWO, BF16, 5, 40, 5", "FOUR_BY_TWO, BF16, 13, 300, 201",
        "FOUR_BY_TWO, F32, 4, 37, 3", "FOUR_BY_TWO, F32, 9, 77, 25",
        "FOUR_BY_THREE, BF16, 1, 7, 1", "FOUR_BY_THREE, BF16, 8, 64, 13", "FOUR_BY_THREE, BF16, 17, 129, 301",
        "FOUR_BY_THREE, F32, 4, 37, 3", "FOUR_BY_THREE, F32, 9, 77, 25"})
    void matchesTheNaiveProduct(NativeGemm.Blocking blocking, DType dtype, int rows, int k, int n) {
        Path library = Path.of(System.getProperty(NativeGemm.LIBRARY_PROPERTY, "../bench/native/build/libmoegemm.so"));
        assumeTrue(Files.isReadable(library), "native GEMM not built: run bench/native/build.sh");
        System.setProperty(NativeGemm.LIBRARY_PROPERTY, library.toString());
        NativeGemm gemm = NativeGemm.load(blocking);
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
            gemm.matmulTransposed(a, rows, k, weight, actual);
            for (int i = 0; i < expected.length; i++) {
                assertThat(actual[i]).as("element %d", i).isCloseTo(expected[i], within(1e-4f * k));
            }
        }
    }
}
