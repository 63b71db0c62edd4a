package dev.moecluster.bench.jmh;

import dev.moecluster.core.kernel.Gemm;
import dev.moecluster.core.moe.ExpertWeights;
import dev.moecluster.core.tensor.DType;
import java.lang.foreign.Arena;
import java.util.concurrent.TimeUnit;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;

/**
 * The expert FFN on one core: the Vector API GEMM ({@link Gemm} with a pool of one, forced by
 * {@code -XX:ActiveProcessorCount=1}) against core's native AVX2 kernel through FFM. Both run the same
 * buffers and SwiGLU loop; only the GEMM differs.
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.Throughput)
@OutputTimeUnit(TimeUnit.SECONDS)
@Fork(jvmArgs = {"--add-modules=jdk.incubator.vector", "--enable-native-access=ALL-UNNAMED", "-Xmx4g"},
        jvmArgsAppend = "-XX:ActiveProcessorCount=1")
public class SingleThreadFfnBenchmark {
    /** {@code vector}: core's Gemm; {@code native}: core's NativeGemm; {@code vector-s2i}: Gemm before the int-lane bf16 split. */
    @Param({"vector", "native"})
    public String kernel;

    @Param({"BF16", "F32", "FP8_E4M3"})
    public DType dtype;

    @Param({"1", "16", "256"})
    public int rows;

    private Arena arena;
    private ExpertWeights expert;
    private FfnKernel ffn;
    private float[] x;
    private float[] out;

    @Setup(Level.Trial)
    public void setUp() {
        if (Gemm.parallelism() != 1) {
            throw new IllegalStateException("single-thread benchmark needs -XX:ActiveProcessorCount=1, Gemm has "
                    + Gemm.parallelism() + " threads");
        }
        arena = Arena.ofShared();
        expert = ExpertFixture.expert(arena, dtype);
        x = ExpertFixture.activations(rows);
        out = new float[rows * ExpertFixture.HIDDEN];
        ffn = FfnKernel.of(kernel, expert);
        // A kernel that is fast but wrong proves nothing: check it against core's once.
        float[] expected = new float[out.length];
        expert.forward(x, rows, expected);
        ffn.forward(x, rows, out);
        KernelChecks.requireClose(kernel + " FFN", expected, out);
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        arena.close();
    }

    @Benchmark
    public float[] forward() {
        ffn.forward(x, rows, out);
        return out;
    }
}
