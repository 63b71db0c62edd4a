package dev.moecluster.core.model;

import dev.moecluster.core.moe.ChannelScales;
import dev.moecluster.core.moe.ExpertWeights;
import dev.moecluster.core.moe.SharedExpert;
import dev.moecluster.core.tensor.DType;
import dev.moecluster.core.tensor.Tensor;
import java.lang.foreign.Arena;
import java.util.Arrays;
import java.util.Optional;

/**
 * Where each architecture's MoE tensors live in a published checkpoint, and how to read one expert
 * into Linear layout. Mixtral, Qwen and DeepSeek store experts one by one as Linear weights (used in
 * place, memory-mapped); Llama 4 stores all experts of a layer fused and transposed
 * ({@code gate_up_proj [E, H, 2I]}, {@code down_proj [E, I, H]}), so its experts are transposed into
 * memory from the caller's arena once, at load.
 *
 * <p>FP8 checkpoints keep their e4m3 expert weights as stored, with one scale per output channel.
 * Meta's Llama 4 FP8 release (compressed-tensors, per-channel) stores experts one by one, as the
 * other architectures do: {@code experts.{e}.gate_proj.weight [I, H]} in F8_E4M3 with
 * {@code experts.{e}.gate_proj.weight_scale [I, 1]}; transformers' fbgemm_fp8 keeps them fused:
 * {@code experts.gate_up_proj} with {@code gate_up_proj_scale [E, 1, 2I]} and {@code down_proj} with
 * {@code down_proj_scale [E, H, 1]}. Both are read; block-wise scales ({@code weight_scale_inv}) are not.
 */
public final class CheckpointLayout {
    private final ModelConfig config;
    private final String p;

    public CheckpointLayout(ModelConfig config) {
        this.config = config;
        this.p = config.weightPrefix();
    }

    private String layer(int layer) {
        return p + "layers." + layer + ".";
    }

    /** The router (gate) weight {@code [E, H]} of a MoE layer. */
    public String gateWeight(int layer) {
        return switch (config.architecture()) {
            case MIXTRAL -> layer(layer) + "block_sparse_moe.gate.weight";
            case QWEN3_MOE, QWEN2_MOE, DEEPSEEK_V3 -> layer(layer) + "mlp.gate.weight";
            case LLAMA4 -> layer(layer) + "feed_forward.router.weight";
        };
    }

    /** DeepSeek-V3's {@code e_score_correction_bias}, where the architecture has one. */
    public Optional<String> scoreCorrectionBias(int layer) {
        return config.architecture() == Architecture.DEEPSEEK_V3
                ? Optional.of(layer(layer) + "mlp.gate.e_score_correction_bias")
                : Optional.empty();
    }

    /**
     * The names of one expert's gate, up and down projections in a per-expert layout (for Llama 4,
     * the layout of Meta's FP8 release; its bf16 checkpoints store experts fused).
     */
    public String[] expertTensorNames(int layer, int expert) {
        String base = switch (config.architecture()) {
            case MIXTRAL -> layer(layer) + "block_sparse_moe.experts." + expert + ".";
            case QWEN3_MOE, QWEN2_MOE, DEEPSEEK_V3 -> layer(layer) + "mlp.experts." + expert + ".";
            case LLAMA4 -> layer(layer) + "feed_forward.experts." + expert + ".";
        };
        return config.architecture() == Architecture.MIXTRAL
                ? new String[] {base + "w1.weight", base + "w3.weight", base + "w2.weight"}
                : new String[] {base + "gate_proj.weight", base + "up_proj.weight", base + "down_proj.weight"};
    }

    /** Llama 4's fused expert tensors of a layer: {@code gate_up_proj} and {@code down_proj}. */
    public String[] fusedExpertTensorNames(int layer) {
        String base = layer(layer) + "feed_forward.experts.";
        return new String[] {base + "gate_up_proj", base + "down_proj"};
    }

    /**
     * Reads one routed expert in Linear layout. Views into the mapped checkpoint where the layout
     * allows; otherwise copies from {@code arena} (Llama 4), keeping the stored dtype.
     */
    public ExpertWeights expert(Checkpoint checkpoint, Arena arena, int layer, int expert) {
        if (!config.isMoeLayer(layer)) {
            throw new IllegalArgumentException("layer " + layer + " is not a MoE layer");
        }
        if (expert < 0 || expert >= config.numExperts()) {
            throw new IllegalArgumentException("expert " + expert + " out of range 0.." + (config.numExperts() - 1));
        }
        String[] names = expertTensorNames(layer, expert);
        if (config.architecture() == Architecture.LLAMA4 && !checkpoint.contains(names[0])) {
            return fusedLlama4Expert(checkpoint, arena, layer, expert);
        }
        Tensor gate = checkpoint.tensor(names[0]);
        Tensor up = checkpoint.tensor(names[1]);
        Tensor down = checkpoint.tensor(names[2]);
        if (gate.dtype() != DType.FP8_E4M3) {
            return new ExpertWeights(gate, up, down);
        }
        return new ExpertWeights(gate, up, down, new ChannelScales(
                channelScales(checkpoint, names[0], gate), channelScales(checkpoint, names[1], up),
                channelScales(checkpoint, names[2], down)));
    }

    private ExpertWeights fusedLlama4Expert(Checkpoint checkpoint, Arena arena, int layer, int expert) {
        String[] names = fusedExpertTensorNames(layer);
        Tensor gateUp = checkpoint.tensor(names[0]).slice(expert); // [H, 2I]
        Tensor down = checkpoint.tensor(names[1]).slice(expert); // [I, H]
        long inter = gateUp.dim(1) / 2;
        Tensor gate = transposeColumns(arena, gateUp, 0, inter);
        Tensor up = transposeColumns(arena, gateUp, inter, 2 * inter);
        Tensor downLinear = down.transpose2d(arena);
        if (gateUp.dtype() != DType.FP8_E4M3) {
            return new ExpertWeights(gate, up, downLinear);
        }
        // fbgemm_fp8: gate_up_proj_scale [E, 1, 2I] (gate's channels, then up's), down_proj_scale [E, H, 1].
        float[] gateUpScale = scaleValues(checkpoint, names[0] + "_scale", expert, 2 * inter);
        float[] downScale = scaleValues(checkpoint, names[1] + "_scale", expert, down.dim(1));
        return new ExpertWeights(gate, up, downLinear, new ChannelScales(
                Arrays.copyOfRange(gateUpScale, 0, (int) inter), Arrays.copyOfRange(gateUpScale, (int) inter, (int) (2 * inter)),
                downScale));
    }

    /**
     * The per-output-channel scales of the FP8 Linear weight {@code weightName}: its
     * {@code weight_scale}, {@code [out, 1]} or {@code [out]} as compressed-tensors and fbgemm write
     * it, or one per-tensor value for every channel; f32, bf16 or f16.
     */
    private static float[] channelScales(Checkpoint checkpoint, String weightName, Tensor weight) {
        String name = weightName + "_scale";
        if (!checkpoint.contains(name)) {
            if (checkpoint.contains(weightName + "_scale_inv")) {
                throw new IllegalArgumentException(weightName + " has block-wise FP8 scales (weight_scale_inv); only"
                        + " per-channel or per-tensor weight_scale is supported");
            }
            throw new IllegalArgumentException("FP8 weight " + weightName + " has no " + name + " in the checkpoint");
        }
        return scaleValues(checkpoint, name, -1, weight.dim(0));
    }

    /**
     * {@code channels} scale values from tensor {@code name}, of expert {@code expert} when the tensor
     * has a leading expert dimension ({@code expert} ≥ 0); a single value is broadcast to every channel.
     */
    private static float[] scaleValues(Checkpoint checkpoint, String name, int expert, long channels) {
        if (!checkpoint.contains(name)) {
            throw new IllegalArgumentException("FP8 expert weights need the scale tensor " + name + ", which the checkpoint lacks");
        }
        Tensor t = checkpoint.tensor(name);
        if (t.dtype() == DType.FP8_E4M3) {
            throw new IllegalArgumentException("scale tensor " + name + " is FP8; expected f32, bf16 or f16");
        }
        if (expert >= 0) {
            if (t.rank() == 0 || t.dim(0) <= expert) {
                throw new IllegalArgumentException("scale tensor " + name + " " + Arrays.toString(t.shape())
                        + " has no entry for expert " + expert);
            }
            t = t.slice(expert);
        }
        long n = t.elementCount();
        if (n != channels && n != 1) {
            throw new IllegalArgumentException("scale tensor " + name + " " + Arrays.toString(t.shape()) + " holds " + n
                    + " values; per-channel FP8 needs " + channels + " (or one per tensor)");
        }
        float[] out = new float[Math.toIntExact(channels)];
        for (int i = 0; i < out.length; i++) {
            float v = t.getFloat(n == 1 ? 0 : i);
            if (!(v > 0) || Float.isInfinite(v)) {
                throw new IllegalArgumentException("scale tensor " + name + " holds " + v + " at " + i
                        + "; FP8 scales must be positive and finite");
            }
            out[i] = v;
        }
        return out;
    }

    private static Tensor transposeColumns(Arena arena, Tensor t, long from, long to) {
        try (Arena scratch = Arena.ofConfined()) {
            return t.columns(scratch, from, to).transpose2d(arena);
        }
    }

    /** The shared expert of a MoE layer, if the architecture has one. */
    public Optional<SharedExpert> sharedExpert(Checkpoint checkpoint, int layer) {
        String base;
        String gate = null;
        switch (config.architecture()) {
            case MIXTRAL, QWEN3_MOE -> {
                return Optional.empty();
            }
            case QWEN2_MOE -> {
                base = layer(layer) + "mlp.shared_expert.";
                gate = layer(layer) + "mlp.shared_expert_gate.weight";
            }
            case LLAMA4 -> base = layer(layer) + "feed_forward.shared_expert.";
            case DEEPSEEK_V3 -> base = layer(layer) + "mlp.shared_experts.";
            default -> throw new AssertionError();
        }
        if (!checkpoint.contains(base + "gate_proj.weight")) {
            return Optional.empty();
        }
        ExpertWeights ffn = new ExpertWeights(checkpoint.denseTensor(base + "gate_proj.weight"),
                checkpoint.denseTensor(base + "up_proj.weight"), checkpoint.denseTensor(base + "down_proj.weight"));
        return Optional.of(new SharedExpert(ffn, gate == null ? null : checkpoint.denseTensor(gate)));
    }
}
