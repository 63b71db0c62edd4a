package dev.moecluster.bench.nativekernel;

import static java.util.Objects.requireNonNull;

import dev.moecluster.core.moe.ExpertWeights;

/**
 * {@link ExpertWeights#forward} with the three GEMMs done by {@link NativeGemm} instead of the Vector
 * API: the same buffers, the same SwiGLU loop, so a benchmark of the two differs only in the kernel.
 */
public final class NativeExpertFfn {
    private final NativeGemm gemm;
    private final ExpertWeights expert;

    public NativeExpertFfn(NativeGemm gemm, ExpertWeights expert) {
        this.gemm = requireNonNull(gemm, "gemm is null");
        this.expert = requireNonNull(expert, "expert is null");
    }

    /** Runs the FFN on {@code rows} rows of {@code x} ({@code rows × H}) into {@code out} ({@code rows × H}). */
    public void forward(float[] x, int rows, float[] out) {
        int h = expert.hiddenSize();
        int inter = expert.intermediateSize();
        float[] g = new float[rows * inter];
        float[] u = new float[rows * inter];
        gemm.matmulTransposed(x, rows, h, expert.gate(), g);
        gemm.matmulTransposed(x, rows, h, expert.up(), u);
        for (int i = 0; i < g.length; i++) {
            g[i] = ExpertWeights.silu(g[i]) * u[i];
        }
        gemm.matmulTransposed(g, rows, inter, expert.down(), out);
    }
}
