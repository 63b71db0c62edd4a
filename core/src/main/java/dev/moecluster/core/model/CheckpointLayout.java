package dev.moecluster.core.model;

import dev.moecluster.core.moe.ExpertWeights;
import dev.moecluster.core.moe.SharedExpert;
import dev.moecluster.core.tensor.Tensor;
import java.lang.foreign.Arena;
import java.util.Optional;

/**
 * Where each architecture's MoE tensors live in a published checkpoint, and how to read one expert
 * into Linear layout. Mixtral, Qwen and DeepSeek store experts one by one as Linear weights (used in
 * place, memory-mapped); Llama 4 stores all experts of a layer fused and transposed
 * ({@code gate_up_proj [E, H, 2I]}, {@code down_proj [E, I, H]}), so its experts are transposed into
 * memory from the caller's arena once, at load.
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

    /** The names of one expert's gate, up and down projections (per-expert layouts only). */
    public String[] expertTensorNames(int layer, int expert) {
        String base = switch (config.architecture()) {
            case MIXTRAL -> layer(layer) + "block_sparse_moe.experts." + expert + ".";
            case QWEN3_MOE, QWEN2_MOE, DEEPSEEK_V3 -> layer(layer) + "mlp.experts." + expert + ".";
            case LLAMA4 -> throw new IllegalStateException("Llama 4 stores experts fused");
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
        if (config.architecture() == Architecture.LLAMA4) {
            String[] names = fusedExpertTensorNames(layer);
            Tensor gateUp = checkpoint.tensor(names[0]).slice(expert); // [H, 2I]
            Tensor down = checkpoint.tensor(names[1]).slice(expert); // [I, H]
            long inter = gateUp.dim(1) / 2;
            return new ExpertWeights(
                    transposeColumns(arena, gateUp, 0, inter),
                    transposeColumns(arena, gateUp, inter, 2 * inter),
                    down.transpose2d(arena));
        }
        String[] names = expertTensorNames(layer, expert);
        return new ExpertWeights(checkpoint.tensor(names[0]), checkpoint.tensor(names[1]), checkpoint.tensor(names[2]));
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
        ExpertWeights ffn = new ExpertWeights(checkpoint.tensor(base + "gate_proj.weight"),
                checkpoint.tensor(base + "up_proj.weight"), checkpoint.tensor(base + "down_proj.weight"));
        return Optional.of(new SharedExpert(ffn, gate == null ? null : checkpoint.tensor(gate)));
    }
}
