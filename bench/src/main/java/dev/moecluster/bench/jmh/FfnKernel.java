package dev.moecluster.bench.jmh;

import dev.moecluster.bench.kernelcandidate.ProposedGemm;
import dev.moecluster.bench.nativekernel.NativeExpertFfn;
import dev.moecluster.bench.nativekernel.NativeGemm;
import dev.moecluster.core.moe.ExpertWeights;

/** One way to run an expert FFN, chosen by the name the benchmarks use as a parameter. */
interface FfnKernel {
    void forward(float[] x, int rows, float[] out);

    /** {@code vector}, {@code vector-4x3}, {@code native} or {@code native-4x3}. */
    static FfnKernel of(String name, ExpertWeights expert) {
        return switch (name) {
            case "vector" -> expert::forward;
            case "vector-4x3" -> (x, rows, out) -> proposedForward(expert, x, rows, out);
            case "native" -> new NativeExpertFfn(NativeGemm.load(NativeGemm.Blocking.FOUR_BY_TWO), expert)::forward;
            case "native-4x3" -> new NativeExpertFfn(NativeGemm.load(NativeGemm.Blocking.FOUR_BY_THREE), expert)::forward;
            default -> throw new IllegalArgumentException("unknown kernel " + name);
        };
    }

    /** {@link ExpertWeights#forward} line for line, with {@link ProposedGemm}. */
    private static void proposedForward(ExpertWeights expert, float[] x, int rows, float[] out) {
        int h = expert.hiddenSize();
        int inter = expert.intermediateSize();
        float[] g = new float[rows * inter];
        float[] u = new float[rows * inter];
        ProposedGemm.matmulTransposed(x, rows, h, expert.gate(), g);
        ProposedGemm.matmulTransposed(x, rows, h, expert.up(), u);
        for (int i = 0; i < g.length; i++) {
            g[i] = ExpertWeights.silu(g[i]) * u[i];
        }
        ProposedGemm.matmulTransposed(g, rows, inter, expert.down(), out);
    }
}
