package dev.moecluster.core.kernel;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.moecluster.core.tensor.DType;
import dev.moecluster.core.tensor.Tensor;
import java.lang.foreign.Arena;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * The native kernel against {@link Gemm#naive} on edge shapes, NaN propagation, and the fallback where
 * the library is absent or broken. Kernel tests run where the jar's library loads (linux-x86_64 with
 * AVX2 and FMA); the fallback tests everywhere.
 */
class NativeGemmTest {

    private static NativeGemm nativeGemm() {
        NativeGemm.Availability a = NativeGemm.probe();
        assumeTrue(a.gemm().isPresent(), "native GEMM unavailable here: " + a.description());
        return a.gemm().get();
    }

    private static float[] gaussian(int n, SplittableRandom r) {
        float[] v = new float[n];
        for (int i = 0; i < n; i++) {
            v[i] = (float) r.nextGaussian();
        }
        return v;
    }

    /** 1 row, the 4-row blocks and remainders; k below, at and off multiples of 8; n off multiples of 3 and 4; a parallel shape. */
    static Stream<Arguments> shapes() {
        List<Arguments> a = new ArrayList<>();
        for (DType dtype : new DType[] {DType.F32, DType.BF16}) {
            for (int rows : new int[] {1, 3, 4, 5, 8, 13}) {
                for (int[] kn : new int[][] {{1, 1}, {7, 5}, {8, 3}, {13, 4}, {67, 11}, {256, 31}}) {
                    a.add(Arguments.of(dtype, rows, kn[0], kn[1]));
                }
            }
            a.add(Arguments.of(dtype, 33, 67, 1001)); // splits across the pool, ragged everywhere
            a.add(Arguments.of(dtype, 1, 4096, 515));
            a.add(Arguments.of(dtype, 6, 2000, 100)); // k large enough to shrink the row tile
            // rows × k = 2^20 multiply-adds per column: 12 columns per downcall, ranges cut mid-range
            a.add(Arguments.of(dtype, 256, 4096, 40));
        }
        return a.stream();
    }

    @ParameterizedTest(name = "{0} rows={1} k={2} n={3}")
    @MethodSource("shapes")
    void matchesTheNaiveTripleLoop(DType dtype, int rows, int k, int n) {
        NativeGemm gemm = nativeGemm();
        SplittableRandom r = new SplittableRandom(rows * 7919L + k * 31L + n);
        float[] a = gaussian(rows * k, r);
        try (Arena arena = Arena.ofShared()) {
            Tensor w = Tensor.of(arena, dtype, new long[] {n, k}, gaussian(n * k, r));
            float[] c = new float[rows * n];
            java.util.Arrays.fill(c, Float.NaN); // every output must be written
            gemm.matmulTransposed(a, rows, k, w, c);
            float[] expected = Gemm.naive(a, rows, k, w);
            for (int i = 0; i < rows; i++) {
                for (int j = 0; j < n; j++) {
                    double scale = 0;
                    for (int x = 0; x < k; x++) {
                        scale += Math.abs((double) a[i * k + x] * w.getFloat((long) j * k + x));
                    }
                    assertThat(Math.abs((double) c[i * n + j] - expected[i * n + j]))
                            .as("c[%d][%d] = %s, naive %s", i, j, c[i * n + j], expected[i * n + j])
                            .isLessThanOrEqualTo(1e-5 * scale + 1e-30);
                }
            }
        }
    }

    @Test
    void aNaNWeightReachesExactlyItsOutputColumnAndANaNActivationItsRow() {
        NativeGemm gemm = nativeGemm();
        int rows = 5, k = 21, n = 7;
        for (DType dtype : new DType[] {DType.F32, DType.BF16}) {
            for (int nanK : new int[] {0, 9, k - 1}) { // in a vector block and in the scalar tail
                SplittableRandom r = new SplittableRandom(nanK);
                float[] values = gaussian(n * k, r);
                values[3 * k + nanK] = Float.NaN;
                float[] a = gaussian(rows * k, r);
                a[4 * k + nanK] = Float.NaN; // row 4 is the 1-row remainder
                try (Arena arena = Arena.ofConfined()) {
                    Tensor w = Tensor.of(arena, dtype, new long[] {n, k}, values);
                    float[] c = new float[rows * n];
                    gemm.matmulTransposed(a, rows, k, w, c);
                    for (int i = 0; i < rows; i++) {
                        for (int j = 0; j < n; j++) {
                            assertThat(Float.isNaN(c[i * n + j])).as("%s c[%d][%d] = %s", dtype, i, j, c[i * n + j])
                                    .isEqualTo(i == 4 || j == 3);
                        }
                    }
                }
            }
        }
    }

    @Test
    void rejectsWhatGemmRejects() {
        NativeGemm gemm = nativeGemm();
        try (Arena arena = Arena.ofConfined()) {
            Tensor f16 = Tensor.of(arena, DType.F16, new long[] {3, 4}, new float[12]);
            assertThatThrownBy(() -> gemm.matmulTransposed(new float[4], 1, 4, f16, new float[3]))
                    .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("f32 or bf16");
            Tensor w = Tensor.of(arena, DType.F32, new long[] {3, 4}, new float[12]);
            assertThatThrownBy(() -> gemm.matmulTransposed(new float[7], 2, 4, w, new float[6]))
                    .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("too small");
        }
    }

    @Test
    void aMissingLibraryIsUnavailableWithTheReasonNotAnError(@TempDir Path dir) {
        NativeGemm.Availability a = NativeGemm.load(dir.resolve("libabsent.so"));
        assertThat(a.gemm()).isEmpty();
        assertThat(a.description()).contains("cannot load", "libabsent.so");
    }

    @Test
    void aFileThatIsNoLibraryIsUnavailableToo(@TempDir Path dir) throws Exception {
        Path bogus = Files.writeString(dir.resolve("notalibrary.so"), "not an ELF file");
        assertThat(NativeGemm.load(bogus).gemm()).isEmpty();
    }

    @Test
    void aLibraryWithoutTheKernelsIsUnavailable() {
        // libc loads but has no moe_gemm_isa: the lookup fails inside load, which must not throw.
        Path libc = Stream.of("/lib/x86_64-linux-gnu/libc.so.6", "/usr/lib/x86_64-linux-gnu/libc.so.6", "/lib64/libc.so.6")
                .map(Path::of).filter(Files::exists).findFirst().orElse(null);
        assumeTrue(libc != null, "no libc.so.6 at the usual places");
        NativeGemm.Availability a = NativeGemm.load(libc);
        assertThat(a.gemm()).isEmpty();
        assertThat(a.description()).contains("moe_gemm_isa");
    }

    @Test
    void selectHonoursTheForcedFallbackAndRejectsUnknownNames() {
        assertThat(CpuKernels.select("vector")).isSameAs(Gemm.VECTOR);
        MatMul auto = CpuKernels.select("auto");
        assertThat(auto.name()).isEqualTo(NativeGemm.probe().gemm().isPresent() ? "native" : "vector");
        assertThatThrownBy(() -> CpuKernels.select("blas")).isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("auto, vector, native");
    }

    @Test
    void nativeIsEitherTheLoadedKernelOrAClearError() {
        NativeGemm.Availability a = NativeGemm.probe();
        if (a.gemm().isPresent()) {
            assertThat(CpuKernels.select("native")).isSameAs(a.gemm().get());
        } else {
            assertThatThrownBy(() -> CpuKernels.select("native")).isInstanceOf(IllegalStateException.class)
                    .hasMessageContaining("--cpu-kernel vector");
        }
    }

    @Test
    void theJarCarriesTheLibraryAndItLoadsOnLinuxX86WithAvx2() throws Exception {
        assertThat(NativeGemm.class.getResource(NativeGemm.RESOURCE)).isNotNull();
        String flags = Files.exists(Path.of("/proc/cpuinfo")) ? Files.readString(Path.of("/proc/cpuinfo")) : "";
        boolean avx2Fma = flags.contains(" avx2") && flags.contains(" fma");
        assumeTrue(System.getProperty("os.arch").equals("amd64") && avx2Fma, "not an AVX2+FMA x86-64 machine");
        assertThat(NativeGemm.probe().gemm()).as(NativeGemm.probe().description()).isPresent();
    }
}
