package dev.moecluster.core.moe;

import static java.util.Objects.requireNonNull;

import dev.moecluster.core.kernel.Gemm;
import dev.moecluster.core.model.Checkpoint;
import dev.moecluster.core.model.CheckpointLayout;
import dev.moecluster.core.tensor.Tensor;

/**
 * The non-expert weights of one MoE layer, which live wherever the gate runs: the router weight
 * {@code [E, H]}, DeepSeek-V3's score-correction bias, and the shared expert.
 */
public record MoeLayerWeights(int layer, Tensor gate, float[] correctionBias, SharedExpert shared) {
    public MoeLayerWeights {
        requireNonNull(gate, "gate is null");
    }

    public static MoeLayerWeights load(CheckpointLayout layout, Checkpoint checkpoint, int layer) {
        Tensor gate = checkpoint.denseTensor(layout.gateWeight(layer));
        float[] bias = layout.scoreCorrectionBias(layer)
                .filter(checkpoint::contains)
                .map(n -> checkpoint.denseTensor(n).toFloatArray())
                .orElse(null);
        return new MoeLayerWeights(layer, gate, bias, layout.sharedExpert(checkpoint, layer).orElse(null));
    }

    /** Router logits ({@code tokens × E}, f32) and the gate's choices for {@code tokens} rows of {@code x}. */
    public GateResult route(Gating gating, float[] x, int tokens) {
        int experts = (int) gate.dim(0);
        float[] logits = new float[tokens * experts];
        Gemm.matmulTransposed(x, tokens, (int) gate.dim(1), gate, logits);
        return gating.select(logits, tokens, correctionBias);
    }

    /** Adds the shared expert's output, when the layer has one. */
    public void addShared(float[] x, int tokens, float[] out) {
        if (shared != null) {
            shared.addTo(x, tokens, out);
        }
    }
}
