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
 * One SwiGLU expert FFN ({@link ExpertWeights#forward}, H=2048, I=5632) through the Vector API GEMM on
 * all cores. The score is FFNs per second; {@link KernelBenchmarks} turns it into GFLOP/s with
 * {@link ExpertFixture#flops}.
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.Throughput)
@OutputTimeUnit(TimeUnit.SECONDS)
@Fork(jvmArgs = {"--add-modules=jdk.incubator.vector", "--enable-native-access=ALL-UNNAMED", "-Xmx4g"})
public class ExpertFfnBenchmark {
    @Param({"BF16", "F32", "FP8_E4M3"})
    public DType dtype;

    @Param({"1", "16", "256"})
    public int rows;

    private Arena arena;
    private ExpertWeights expert;
    private float[] x;
    private float[] out;

    @Setup(Level.Trial)
    public void setUp() {
        arena = Arena.ofShared();
        expert = ExpertFixture.expert(arena, dtype);
        x = ExpertFixture.activations(rows);
        out = new float[rows * ExpertFixture.HIDDEN];
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        arena.close();
    }

    @Benchmark
    public float[] forward() {
        expert.forward(x, rows, out);
        return out;
    }
}
