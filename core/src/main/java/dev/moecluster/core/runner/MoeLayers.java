package dev.moecluster.core.runner;

import dev.moecluster.core.tensor.FloatMatrix;

/**
 * The sparse-MoE blocks of a model, as the decoder calls them: in-process ({@link ReferenceMoeLayers})
 * or on remote expert workers. One call carries every row of a forward step, so a batched decode
 * dispatches all active sequences' tokens to the experts at once.
 */
public interface MoeLayers {
    /**
     * The MoE block of {@code layer} for the rows of {@code x} ({@code tokens × hidden}, the
     * post-attention-norm hidden states): routed experts weighted and summed plus any shared expert,
     * without the residual, one output row per input row in the same order.
     */
    FloatMatrix forward(int layer, FloatMatrix x);
}
