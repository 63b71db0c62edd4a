package dev.moecluster.bench.jmh;

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
 * The expert FFN with core's {@code Gemm} ({@code current}) against the bench copy with 4 × 3
 * register blocking ({@code proposed}), same JVM flags, same buffers and SwiGLU loop, on all cores unless the runner
 * passes {@code --cpus}.
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.Throughput)
@OutputTimeUnit(TimeUnit.SECONDS)
@Fork(jvmArgs = {"--add-modules=jdk.incubator.vector", "--enable-native-access=ALL-UNNAMED", "-Xmx4g"})
public class GemmCandidateBenchmark {
    @Param({"current", "proposed"})
    public String kernel;

    @Param({"BF16", "F32"})
    public DType dtype;

    @Param({"1", "16", "256"})
    public int rows;

    private Arena arena;
    private ExpertWeights expert;
    private float[] x;
    private float[] out;
    private FfnKernel ffn;

    @Setup(Level.Trial)
    public void setUp() {
        arena = Arena.ofShared();
        expert = ExpertFixture.expert(arena, dtype);
        x = ExpertFixture.activations(rows);
        out = new float[rows * ExpertFixture.HIDDEN];
        ffn = FfnKernel.of(switch (kernel) {
            case "current" -> "vector";
            case "proposed" -> "vector-4x3";
            default -> throw new IllegalArgumentException("unknown kernel " + kernel);
        }, expert);
        float[] expected = new float[out.length];
        expert.forward(x, rows, expected);
        ffn.forward(x, rows, out);
        KernelChecks.requireClose(kernel + " GEMM FFN", expected, out);
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
