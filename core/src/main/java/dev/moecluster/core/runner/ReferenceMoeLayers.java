package dev.moecluster.core.runner;

import static java.util.Objects.requireNonNull;

import dev.moecluster.core.moe.ReferenceMoeBlock;
import dev.moecluster.core.tensor.FloatMatrix;

/** The MoE layers computed in this process by {@link ReferenceMoeBlock}: the yardstick for remote experts. */
public final class ReferenceMoeLayers implements MoeLayers {
    private final ReferenceMoeBlock block;

    public ReferenceMoeLayers(ReferenceMoeBlock block) {
        this.block = requireNonNull(block, "block is null");
    }

    @Override
    public FloatMatrix forward(int layer, FloatMatrix x) {
        return block.forward(layer, x).output();
    }
}
