package dev.moecluster.coordinator;

import static java.util.Objects.requireNonNull;

import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import dev.moecluster.core.model.Architecture;
import dev.moecluster.core.model.ModelConfig;
import dev.moecluster.core.moe.ExpertWeights;
import dev.moecluster.core.tensor.DType;

/**
 * A model's parameters counted from its config, split into the routed experts (what workers hold)
 * and the dense rest (what the router holds: embeddings, attention, norms, gates, shared experts,
 * dense FFN layers and the LM head). Vision encoders and multi-token-prediction heads are not
 * counted: the cluster serves the text decoder.
 *
 * @param numLayers decoder layers, dense and MoE
 * @param moeLayers number of sparse-MoE decoder layers
 * @param expertsPerLayer routed experts in each MoE layer
 * @param expertsPerToken routed experts each token runs in each MoE layer
 * @param paramsPerExpert one routed expert: gate, up and down, {@code 3 × hidden × intermediate}
 * @param dense the non-routed parameters by kind
 */
public record ModelFootprint(
        String model,
        Architecture architecture,
        int numLayers,
        int hiddenSize,
        int expertIntermediateSize,
        int moeLayers,
        int expertsPerLayer,
        int expertsPerToken,
        long paramsPerExpert,
        DenseParameters dense) {

    public ModelFootprint {
        requireNonNull(model, "model is null");
        requireNonNull(architecture, "architecture is null");
        requireNonNull(dense, "dense is null");
    }

    /**
     * The dense (router-side) parameters by kind.
     *
     * @param embeddings the token embedding table
     * @param lmHead the output projection, 0 when tied to the embeddings
     * @param attention projections (and their biases and q/k norms) over all layers
     * @param denseFfn the FFNs of the layers that are not MoE
     * @param sharedExperts shared experts (and Qwen2-MoE's shared-expert gate) over all MoE layers
     * @param routers expert gates (and DeepSeek-V3's score-correction bias) over all MoE layers
     * @param norms the layer norms around attention and FFN, and the final norm
     */
    public record DenseParameters(long embeddings, long lmHead, long attention, long denseFfn, long sharedExperts,
            long routers, long norms) {
        public long total() {
            return embeddings + lmHead + attention + denseFfn + sharedExperts + routers + norms;
        }
    }

    /** Counts the parameters of {@code config}'s text decoder. */
    public static ModelFootprint of(ModelConfig config) {
        requireNonNull(config, "config is null");
        JsonObject c = config.raw();
        long h = config.hiddenSize();
        int layers = config.numLayers();
        int moe = config.moeLayers().size();
        int dense = layers - moe;
        long vocab = required(config, "vocab_size");
        long embeddings = vocab * h;
        long lmHead = bool(c, "tie_word_embeddings", false) ? 0 : vocab * h;
        long perExpert = 3 * h * config.expertIntermediateSize();
        long experts = config.numExperts();

        long attentionPerLayer = config.architecture() == Architecture.DEEPSEEK_V3
                ? latentAttention(config, h)
                : groupedQueryAttention(config, h);
        long denseFfnWidth = switch (config.architecture()) {
            case MIXTRAL -> 0;
            case LLAMA4 -> optional(c, "intermediate_size_mlp", 16384); // Llama4TextConfig's default
            case QWEN3_MOE, QWEN2_MOE, DEEPSEEK_V3 -> optional(c, "intermediate_size", 0);
        };
        long sharedPerLayer = 3 * h * config.sharedExpertIntermediateSize();
        if (config.architecture() == Architecture.QWEN2_MOE && config.sharedExpertIntermediateSize() > 0) {
            sharedPerLayer += h; // shared_expert_gate: Linear(hidden, 1)
        }
        long routerPerLayer = experts * h;
        if (config.architecture() == Architecture.DEEPSEEK_V3) {
            routerPerLayer += experts; // e_score_correction_bias
        }
        DenseParameters parts = new DenseParameters(
                embeddings,
                lmHead,
                layers * attentionPerLayer,
                dense * 3 * h * denseFfnWidth,
                moe * sharedPerLayer,
                moe * routerPerLayer,
                layers * 2 * h + h);
        return new ModelFootprint(config.name(), config.architecture(), layers, config.hiddenSize(),
                config.expertIntermediateSize(), moe, config.numExperts(), config.expertsPerToken(), perExpert, parts);
    }

    /** q, k, v and o projections with grouped KV heads, plus Qwen2's q/k/v biases and Qwen3's q/k norms. */
    private static long groupedQueryAttention(ModelConfig config, long h) {
        JsonObject c = config.raw();
        Architecture arch = config.architecture();
        long heads = required(config, "num_attention_heads");
        long kvHeads = optional(c, "num_key_value_heads", heads);
        long headDim = optional(c, "head_dim", h / heads);
        long q = heads * headDim;
        long kv = kvHeads * headDim;
        long params = h * q + 2 * h * kv + q * h;
        boolean bias = switch (arch) {
            case QWEN2_MOE -> true; // Qwen2 attention always has q/k/v biases
            default -> bool(c, "attention_bias", false);
        };
        if (bias) {
            params += q + 2 * kv;
        }
        if (arch == Architecture.QWEN3_MOE) {
            params += 2 * headDim; // q_norm and k_norm weights
        }
        return params;
    }

    /** DeepSeek-V3's multi-head latent attention: low-rank q (or a full q_proj) and compressed kv. */
    private static long latentAttention(ModelConfig config, long h) {
        JsonObject c = config.raw();
        long heads = required(config, "num_attention_heads");
        long nope = optional(c, "qk_nope_head_dim", 128);
        long rope = optional(c, "qk_rope_head_dim", 64);
        long v = optional(c, "v_head_dim", 128);
        long kvRank = optional(c, "kv_lora_rank", 512);
        long qRank = c.has("q_lora_rank") && c.get("q_lora_rank").isJsonNull() ? 0 : optional(c, "q_lora_rank", 1536);
        long qHead = nope + rope;
        long q = qRank > 0 ? h * qRank + qRank + qRank * heads * qHead : h * heads * qHead;
        long kv = h * (kvRank + rope) + kvRank + kvRank * heads * (nope + v);
        return q + kv + heads * v * h;
    }

    /** Routed-expert parameters over all MoE layers. */
    public long routedExpertParams() {
        return totalExperts() * paramsPerExpert;
    }

    /** Routed experts over all MoE layers. */
    public long totalExperts() {
        return (long) moeLayers * expertsPerLayer;
    }

    /** Routed-expert parameters one token runs: {@code expertsPerToken} per MoE layer. */
    public long activeExpertParams() {
        return (long) moeLayers * expertsPerToken * paramsPerExpert;
    }

    public long totalParams() {
        return dense.total() + routedExpertParams();
    }

    /** Parameters one token runs: all of the dense part and its routed experts. */
    public long activeParams() {
        return dense.total() + activeExpertParams();
    }

    /**
     * Bytes one routed expert takes on a worker at {@code dtype}; FP8 adds one f32 scale per weight
     * row (gate and up have {@code intermediate} rows, down has {@code hidden}).
     */
    public long bytesPerExpert(DType dtype) {
        requireNonNull(dtype, "dtype is null");
        return ExpertWeights.byteSize(dtype, hiddenSize, expertIntermediateSize);
    }

    /** Bytes of the dense part at {@code dtype} (FP8 is counted without its scales). */
    public long denseBytes(DType dtype) {
        return dense.total() * dtype.byteSize();
    }

    private static long required(ModelConfig config, String key) {
        JsonElement e = config.raw().get(key);
        if (e == null || e.isJsonNull()) {
            throw new IllegalArgumentException(config.source() + " is missing "
                    + (config.weightPrefix().startsWith("language_model.") ? "text_config." : "") + key
                    + " (needed to count parameters)");
        }
        return e.getAsLong();
    }

    private static long optional(JsonObject c, String key, long def) {
        JsonElement e = c.get(key);
        return e == null || e.isJsonNull() ? def : e.getAsLong();
    }

    private static boolean bool(JsonObject c, String key, boolean def) {
        JsonElement e = c.get(key);
        return e == null || e.isJsonNull() ? def : e.getAsBoolean();
    }
}
