package dev.moecluster.core.moe;

import static java.util.Objects.requireNonNull;

import dev.moecluster.core.kernel.Gemm;
import dev.moecluster.core.tensor.Tensor;

/**
 * The always-on expert some architectures add to the routed sum (Llama 4, Qwen2-MoE, DeepSeek-V3).
 * It runs on the router, on the unscaled input.
 *
 * @param gate Qwen2-MoE's {@code shared_expert_gate} ({@code [1, H]}): the output is scaled by
 *     {@code sigmoid(gate · x)}; null for architectures that add it ungated
 */
public record SharedExpert(ExpertWeights ffn, Tensor gate) {
    public SharedExpert {
        requireNonNull(ffn, "ffn is null");
    }

    /** Adds the shared expert's output for {@code rows} rows of {@code x} into {@code out}. */
    public void addTo(float[] x, int rows, float[] out) {
        int h = ffn.hiddenSize();
        float[] y = new float[rows * h];
        ffn.forward(x, rows, y);
        float[] scale = null;
        if (gate != null) {
            scale = new float[rows];
            Gemm.matmulTransposed(x, rows, h, gate, scale);
        }
        for (int r = 0; r < rows; r++) {
            float s = scale == null ? 1f : Gating.sigmoid(scale[r]);
            for (int c = 0; c < h; c++) {
                out[r * h + c] += s * y[r * h + c];
            }
        }
    }
}
