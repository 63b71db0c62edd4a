package dev.moecluster.router;

import static java.util.Objects.requireNonNull;

import dev.moecluster.core.model.Checkpoint;
import dev.moecluster.core.model.CheckpointLayout;
import dev.moecluster.core.model.ModelConfig;
import dev.moecluster.core.moe.GateResult;
import dev.moecluster.core.moe.Gating;
import dev.moecluster.core.moe.MoeLayerWeights;
import dev.moecluster.core.runner.MoeLayers;
import dev.moecluster.core.tensor.FloatMatrix;
import java.util.HashMap;
import java.util.Map;

/**
 * The router's sparse-MoE layers: the gate and the shared expert run here, the routed experts on the
 * workers through the {@link MoeDispatcher}. The shared expert is computed while the workers are
 * busy. The decoder calls it as its {@link MoeLayers}; {@code MoeForward} calls {@link #route} for the
 * gate's choices too. Mirrors {@code ReferenceMoeBlock}, which does the same in one process.
 */
final class RemoteMoeBlock implements MoeLayers {
    private final ModelConfig config;
    private final Gating gating;
    private final Map<Integer, MoeLayerWeights> layers = new HashMap<>();
    private final MoeDispatcher dispatcher;

    /** The block's output (without the residual) and the gate's choices. */
    record Result(FloatMatrix output, GateResult gate) {}

    RemoteMoeBlock(ModelConfig config, Checkpoint checkpoint, MoeDispatcher dispatcher) {
        this.config = requireNonNull(config, "config is null");
        this.dispatcher = requireNonNull(dispatcher, "dispatcher is null");
        this.gating = new Gating(config);
        CheckpointLayout layout = new CheckpointLayout(config);
        for (int layer : config.moeLayerList()) {
            layers.put(layer, MoeLayerWeights.load(layout, checkpoint, layer));
        }
    }

    @Override
    public FloatMatrix forward(int layer, FloatMatrix x) {
        return route(layer, x).output();
    }

    /** The block's output for {@code x} and the gate's choices. */
    Result route(int layer, FloatMatrix x) {
        MoeLayerWeights lw = layers.get(layer);
        if (lw == null) {
            throw new IllegalArgumentException("layer " + layer + " is not a MoE layer");
        }
        GateResult gate = lw.route(gating, x.data(), x.rows());
        float[] shared = new float[x.data().length];
        float[] out = dispatcher.dispatch(layer, x, gate, () -> lw.addShared(x.data(), x.rows(), shared));
        for (int i = 0; i < out.length; i++) {
            out[i] += shared[i];
        }
        return new Result(new FloatMatrix(x.rows(), x.cols(), out), gate);
    }
}
