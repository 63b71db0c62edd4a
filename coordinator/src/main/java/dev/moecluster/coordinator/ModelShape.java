package dev.moecluster.coordinator;

import static java.util.Objects.requireNonNull;

import dev.moecluster.core.model.ModelConfig;
import dev.moecluster.core.moe.ExpertWeights;
import java.util.List;
import java.util.TreeSet;

/**
 * What the placement planner needs to know about a model: its MoE layers, the routed experts per
 * layer and the memory one expert takes on a worker. Shared experts stay on the router and are not
 * part of it.
 *
 * @param moeLayers MoE layer indices, ascending and distinct
 * @param numExperts routed experts per MoE layer
 * @param bytesPerExpert bytes one expert's weights take on a worker
 */
public record ModelShape(List<Integer> moeLayers, int numExperts, long bytesPerExpert) {
    public ModelShape {
        requireNonNull(moeLayers, "moeLayers is null");
        moeLayers = List.copyOf(moeLayers);
        if (!moeLayers.equals(List.copyOf(new TreeSet<>(moeLayers)))) {
            throw new IllegalArgumentException("MoE layers must be ascending and distinct, got " + moeLayers);
        }
        if (numExperts < 1) {
            throw new IllegalArgumentException("a MoE layer needs at least one expert, got " + numExperts);
        }
        if (bytesPerExpert < 1) {
            throw new IllegalArgumentException("bytes per expert must be positive, got " + bytesPerExpert);
        }
    }

    /**
     * The shape of a checkpoint: an expert is three {@code hidden × intermediate} matrices (gate, up,
     * down) in the dtype its experts are stored in (FP8 checkpoints: one byte per weight plus one f32
     * scale per weight row).
     */
    public static ModelShape of(ModelConfig config) {
        long bytes = ExpertWeights.byteSize(config.expertDtype(), config.hiddenSize(), config.expertIntermediateSize());
        return new ModelShape(config.moeLayerList(), config.numExperts(), bytes);
    }

    /** Experts over all MoE layers. */
    public int totalExperts() {
        return moeLayers.size() * numExperts;
    }
}
