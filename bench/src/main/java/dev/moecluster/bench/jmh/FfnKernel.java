package dev.moecluster.bench.jmh;

import dev.moecluster.core.kernel.CpuKernels;
import dev.moecluster.core.moe.ExpertWeights;

/** One way to run an expert FFN, chosen by the name the benchmarks use as a parameter. */
interface FfnKernel {
    void forward(float[] x, int rows, float[] out);

    /** {@code vector} (core's Gemm), {@code native} (core's NativeGemm; fails where it cannot run), {@code vector-s2i} (the baseline). */
    static FfnKernel of(String name, ExpertWeights expert) {
        return switch (name) {
            case "vector" -> expert::forward;
            case "vector-s2i" -> (x, rows, out) -> shapeCastForward(expert, x, rows, out);
            case "native" -> {
                var gemm = CpuKernels.select("native");
                yield (x, rows, out) -> expert.forward(x, rows, out, gemm);
            }
            default -> throw new IllegalArgumentException("unknown kernel " + name);
        };
    }

    /** {@link ExpertWeights#forward(float[], int, float[])} over {@link ShapeCastGemm}. */
    private static void shapeCastForward(ExpertWeights e, float[] x, int rows, float[] out) {
        int h = e.hiddenSize();
        int inter = e.intermediateSize();
        float[] g = new float[rows * inter];
        float[] u = new float[rows * inter];
        ShapeCastGemm.matmulTransposed(x, rows, h, e.gate(), g);
        ShapeCastGemm.matmulTransposed(x, rows, h, e.up(), u);
        for (int i = 0; i < g.length; i++) {
            g[i] = ExpertWeights.silu(g[i]) * u[i];
        }
        ShapeCastGemm.matmulTransposed(g, rows, inter, e.down(), out);
    }
}
