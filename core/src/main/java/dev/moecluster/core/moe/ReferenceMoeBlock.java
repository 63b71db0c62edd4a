package dev.moecluster.core.moe;

import dev.moecluster.core.model.Checkpoint;
import dev.moecluster.core.model.CheckpointLayout;
import dev.moecluster.core.model.ModelConfig;
import dev.moecluster.core.tensor.FloatMatrix;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.nio.file.Path;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;

/**
 * The whole sparse-MoE block of a model in one process, no networking: gate, every routed expert,
 * shared expert. It is the yardstick the cluster is tested and benchmarked against, and it computes
 * in f32 throughout. FP8 experts run on the FP8 kernel as workers run them, or, opened with
 * {@link #openDequantized}, as f32 copies of {@code code × scale}: the yardstick for the FP8 kernels.
 */
public final class ReferenceMoeBlock implements AutoCloseable {
    private final ModelConfig config;
    private final Checkpoint checkpoint;
    private final CheckpointLayout layout;
    private final Gating gating;
    private final Arena arena = Arena.ofShared();
    private final Map<Integer, MoeLayerWeights> layers = new ConcurrentHashMap<>();
    private final Map<Long, ExpertWeights> experts = new ConcurrentHashMap<>();

    /** The block's output (without the residual) and the gate's choices. */
    public record Result(FloatMatrix output, GateResult gate) {}

    private final boolean dequantize;

    private ReferenceMoeBlock(ModelConfig config, Checkpoint checkpoint, boolean dequantize) {
        this.config = config;
        this.checkpoint = checkpoint;
        this.layout = new CheckpointLayout(config);
        this.gating = new Gating(config);
        this.dequantize = dequantize;
    }

    public static ReferenceMoeBlock open(Path modelDir) throws IOException {
        return new ReferenceMoeBlock(ModelConfig.load(modelDir), Checkpoint.open(modelDir), false);
    }

    /** As {@link #open}, with FP8 experts dequantized to f32 when first used (4 bytes a weight: for tests). */
    public static ReferenceMoeBlock openDequantized(Path modelDir) throws IOException {
        return new ReferenceMoeBlock(ModelConfig.load(modelDir), Checkpoint.open(modelDir), true);
    }

    public ModelConfig config() {
        return config;
    }

    public Result forward(int layer, FloatMatrix x) {
        if (!config.isMoeLayer(layer)) {
            throw new IllegalArgumentException("layer " + layer + " is not a MoE layer");
        }
        int h = config.hiddenSize();
        if (x.cols() != h) {
            throw new IllegalArgumentException("hidden states have width " + x.cols() + ", the model's hidden size is " + h);
        }
        int tokens = x.rows();
        MoeLayerWeights lw = layers.computeIfAbsent(layer, l -> MoeLayerWeights.load(layout, checkpoint, l));
        GateResult gate = lw.route(gating, x.data(), tokens);
        float[] out = new float[tokens * h];
        int k = gate.k();
        for (int e = 0; e < config.numExperts(); e++) {
            int rows = 0;
            for (int i = 0; i < tokens * k; i++) {
                if (gate.experts()[i] == e) {
                    rows++;
                }
            }
            if (rows == 0) {
                continue;
            }
            int[] slots = new int[rows];
            float[] in = new float[rows * h];
            int r = 0;
            for (int i = 0; i < tokens * k; i++) {
                if (gate.experts()[i] == e) {
                    slots[r] = i;
                    int t = i / k;
                    float scale = gate.scalesInput() ? gate.weights()[i] : 1f;
                    for (int c = 0; c < h; c++) {
                        in[r * h + c] = x.data()[t * h + c] * scale;
                    }
                    r++;
                }
            }
            float[] y = new float[rows * h];
            expert(layer, e).forward(in, rows, y);
            for (r = 0; r < rows; r++) {
                int i = slots[r];
                int t = i / k;
                float w = gate.scalesInput() ? 1f : gate.weights()[i];
                for (int c = 0; c < h; c++) {
                    out[t * h + c] += w * y[r * h + c];
                }
            }
        }
        lw.addShared(x.data(), tokens, out);
        return new Result(new FloatMatrix(tokens, h, out), gate);
    }

    private ExpertWeights expert(int layer, int expert) {
        long key = (long) layer << 32 | expert;
        return experts.computeIfAbsent(key, kk -> {
            ExpertWeights w = layout.expert(checkpoint, arena, layer, expert);
            return dequantize && w.scales() != null ? w.dequantized(arena) : w;
        });
    }

    @Override
    public void close() {
        checkpoint.close();
        arena.close();
    }
}
