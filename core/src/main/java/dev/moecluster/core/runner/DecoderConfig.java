package dev.moecluster.core.runner;

import static java.util.Objects.requireNonNull;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import dev.moecluster.core.model.Architecture;
import dev.moecluster.core.model.ModelConfig;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;

/**
 * The attention, rotary and norm settings of a decoder, read from the text model's
 * {@code config.json} with the defaults of the transformers 5.x config classes where a field is
 * absent. {@link ModelConfig} covers the MoE side; this record covers everything else the dense
 * forward needs.
 *
 * @param headDim {@code head_dim}; when absent Llama 4 uses its config default 128, and the others
 *     (or Llama 4 given {@code null}) {@code hidden_size / num_attention_heads}
 * @param qkvBias q, k and v projections have a bias (Qwen2-MoE {@code qkv_bias}, Qwen3-MoE and
 *     Llama 4 {@code attention_bias})
 * @param outputBias the o projection has a bias (Qwen3-MoE and Llama 4 {@code attention_bias})
 * @param qkRmsNorm Qwen3-MoE's per-head {@code q_norm}/{@code k_norm} (weighted RMSNorm over
 *     {@code head_dim}, before RoPE)
 * @param floorScale Llama 4 {@code floor_scale} for attention temperature tuning
 * @param attnScale Llama 4 {@code attn_scale} for attention temperature tuning
 * @param layers one entry per decoder layer
 */
public record DecoderConfig(
        Architecture architecture,
        int hiddenSize,
        int vocabSize,
        int numHeads,
        int numKvHeads,
        int headDim,
        float rmsNormEps,
        boolean tieWordEmbeddings,
        boolean qkvBias,
        boolean outputBias,
        boolean qkRmsNorm,
        int denseIntermediateSize,
        float floorScale,
        float attnScale,
        Rope rope,
        List<LayerAttention> layers) {

    /**
     * Rotary position embedding parameters ({@code rope_parameters}, or the legacy
     * {@code rope_scaling} and {@code rope_theta}).
     *
     * @param type {@code default}, {@code linear} or {@code llama3}
     * @param interleaved Llama 4 rotates adjacent pairs {@code (x[2i], x[2i+1])} (complex form);
     *     Mixtral and Qwen rotate {@code (x[i], x[i + d/2])} ({@code rotate_half})
     */
    public record Rope(String type, double theta, double factor, double lowFreqFactor, double highFreqFactor,
            double originalMaxPositions, boolean interleaved) {
        public Rope {
            requireNonNull(type, "type is null");
            if (!(theta > 0)) {
                throw new IllegalArgumentException("rope_theta must be positive, got " + theta);
            }
            if (!type.equals("default") && !(factor > 0)) {
                throw new IllegalArgumentException("rope factor must be positive for rope type " + type);
            }
        }

        /** Plain RoPE with the given base. */
        public static Rope plain(double theta, boolean interleaved) {
            return new Rope("default", theta, 1, 1, 1, 0, interleaved);
        }
    }

    /**
     * How one layer attends.
     *
     * @param rope applies RoPE (Llama 4 NoPE layers do not)
     * @param qkL2Norm Llama 4's weightless RMS ("L2") norm on q and k, after RoPE
     * @param temperatureTuning Llama 4's query scaling on NoPE layers
     * @param chunkSize attention only within {@code floor(pos / chunkSize)} blocks; 0 for none
     * @param slidingWindow attention only to keys with {@code q - k < slidingWindow}; 0 for none
     */
    public record LayerAttention(boolean rope, boolean qkL2Norm, boolean temperatureTuning, int chunkSize,
            int slidingWindow) {
        public LayerAttention {
            if (chunkSize < 0 || slidingWindow < 0) {
                throw new IllegalArgumentException("chunk size and sliding window must not be negative");
            }
        }

        /** Plain causal attention with RoPE. */
        public static LayerAttention causal() {
            return new LayerAttention(true, false, false, 0, 0);
        }

        /** The first position a query at {@code position} may attend to. */
        public int firstVisible(int position) {
            int from = 0;
            if (chunkSize > 0) {
                from = position / chunkSize * chunkSize;
            }
            if (slidingWindow > 0) {
                from = Math.max(from, position - slidingWindow + 1);
            }
            return from;
        }
    }

    public DecoderConfig {
        requireNonNull(architecture, "architecture is null");
        requireNonNull(rope, "rope is null");
        layers = List.copyOf(layers);
        if (hiddenSize <= 0 || vocabSize <= 0 || numHeads <= 0 || numKvHeads <= 0 || headDim <= 0) {
            throw new IllegalArgumentException("decoder has non-positive sizes: hidden " + hiddenSize + ", vocab "
                    + vocabSize + ", heads " + numHeads + ", kv heads " + numKvHeads + ", head_dim " + headDim);
        }
        if (numHeads % numKvHeads != 0) {
            throw new IllegalArgumentException("num_attention_heads " + numHeads
                    + " is not a multiple of num_key_value_heads " + numKvHeads);
        }
        if (headDim % 2 != 0) {
            throw new IllegalArgumentException("head_dim " + headDim + " must be even for rotary embeddings");
        }
        if (layers.isEmpty()) {
            throw new IllegalArgumentException("decoder has no layers");
        }
    }

    public int numLayers() {
        return layers.size();
    }

    /** Width of the query projection, {@code heads × head_dim}. */
    public int queryDim() {
        return numHeads * headDim;
    }

    /** Width of one position of the key (or value) cache, {@code kv_heads × head_dim}. */
    public int kvDim() {
        return numKvHeads * headDim;
    }

    /** Query heads that share one key/value head. */
    public int groupSize() {
        return numHeads / numKvHeads;
    }

    public LayerAttention layer(int layer) {
        return layers.get(layer);
    }

    /**
     * Reads the decoder settings from {@code config.raw()}, the text model's config object.
     *
     * @throws IllegalArgumentException naming the config file and the key when a field is missing,
     *     malformed or names a setting the reference decoder does not run
     */
    public static DecoderConfig from(ModelConfig config) {
        try {
            return read(config);
        } catch (IllegalArgumentException | IllegalStateException | UnsupportedOperationException e) {
            String where = config.weightPrefix().startsWith("language_model.") ? " (text_config)" : "";
            throw new IllegalArgumentException(config.source() + where + ": " + e.getMessage(), e);
        }
    }

    private static DecoderConfig read(ModelConfig config) {
        JsonObject c = config.raw();
        Architecture arch = config.architecture();
        if (arch == Architecture.DEEPSEEK_V3) {
            throw new IllegalArgumentException("the reference decoder does not run DeepSeek-V3 (MLA attention)");
        }
        int hidden = config.hiddenSize();
        int layers = config.numLayers();
        int heads = req(c, "num_attention_heads");
        int kvHeads = opt(c, "num_key_value_heads", heads);
        // Llama4TextConfig's head_dim field defaults to 128, but an explicit null means hidden / heads.
        int headDim = isSet(c, "head_dim") ? c.get("head_dim").getAsInt()
                : arch == Architecture.LLAMA4 && !c.has("head_dim") ? 128 : hidden / heads;
        float eps = (float) optDouble(c, "rms_norm_eps", arch == Architecture.MIXTRAL || arch == Architecture.LLAMA4 ? 1e-5 : 1e-6);
        boolean attentionBias = optBool(c, "attention_bias", false);
        boolean qkvBias = switch (arch) {
            case MIXTRAL -> false;
            case QWEN2_MOE -> optBool(c, "qkv_bias", true);
            case QWEN3_MOE, LLAMA4 -> attentionBias;
            case DEEPSEEK_V3 -> throw new AssertionError();
        };
        boolean outputBias = (arch == Architecture.QWEN3_MOE || arch == Architecture.LLAMA4) && attentionBias;
        int denseInter = switch (arch) {
            case LLAMA4 -> opt(c, "intermediate_size_mlp", 16384);
            default -> opt(c, "intermediate_size", 0);
        };
        List<LayerAttention> attention = new ArrayList<>(layers);
        for (int i = 0; i < layers; i++) {
            attention.add(layerAttention(arch, c, i, layers));
        }
        return new DecoderConfig(arch, hidden, req(c, "vocab_size"), heads, kvHeads, headDim, eps,
                optBool(c, "tie_word_embeddings", false), qkvBias, outputBias, arch == Architecture.QWEN3_MOE,
                denseInter, (float) optDouble(c, "floor_scale", 8192), (float) optDouble(c, "attn_scale", 0.1),
                rope(arch, c), attention);
    }

    private static LayerAttention layerAttention(Architecture arch, JsonObject c, int layer, int layers) {
        return switch (arch) {
            case MIXTRAL -> new LayerAttention(true, false, false, 0, positiveOrZero(c, "sliding_window"));
            // Qwen3MoeConfig keeps sliding_window only when use_sliding_window, then on every layer.
            case QWEN3_MOE -> new LayerAttention(true, false, false, 0,
                    optBool(c, "use_sliding_window", false) ? positiveOrZero(c, "sliding_window") : 0);
            case QWEN2_MOE -> {
                String type = layerType(c, layer, layers, () -> {
                    boolean sliding = (layer + 1) % 2 != 0 && layer < opt(c, "max_window_layers", 28)
                            && optBool(c, "use_sliding_window", false);
                    return sliding ? "sliding_attention" : "full_attention";
                });
                int window = optBool(c, "use_sliding_window", false) ? opt(c, "sliding_window", 4096) : 0;
                yield new LayerAttention(true, false, false, 0, type.equals("sliding_attention") ? window : 0);
            }
            case LLAMA4 -> {
                boolean rope = noRopeLayers(c, layers)[layer] != 0;
                String type = layerType(c, layer, layers, () -> rope ? "chunked_attention" : "full_attention");
                int chunk = 0;
                if (type.equals("chunked_attention")) {
                    if (!isSet(c, "attention_chunk_size")) {
                        throw new IllegalArgumentException("layer " + layer
                                + " is chunked_attention but config.json has no attention_chunk_size");
                    }
                    chunk = c.get("attention_chunk_size").getAsInt();
                    if (chunk <= 0) {
                        throw new IllegalArgumentException("attention_chunk_size must be positive, got " + chunk);
                    }
                }
                yield new LayerAttention(rope, rope && optBool(c, "use_qk_norm", true),
                        !rope && truthy(c, "attn_temperature_tuning", true), chunk, 0);
            }
            case DEEPSEEK_V3 -> throw new AssertionError();
        };
    }

    /** Llama 4 {@code no_rope_layers} (1 = RoPE); absent or empty means NoPE every {@code no_rope_layer_interval}. */
    private static int[] noRopeLayers(JsonObject c, int layers) {
        int[] flags = new int[layers];
        JsonElement e = c.get("no_rope_layers");
        if (e != null && e.isJsonArray() && !e.getAsJsonArray().isEmpty()) {
            JsonArray a = e.getAsJsonArray();
            if (a.size() < layers) {
                throw new IllegalArgumentException("no_rope_layers has " + a.size() + " entries for " + layers + " layers");
            }
            for (int i = 0; i < layers; i++) {
                flags[i] = a.get(i).getAsInt();
            }
            return flags;
        }
        int interval = opt(c, "no_rope_layer_interval", 4);
        for (int i = 0; i < layers; i++) {
            flags[i] = (i + 1) % interval != 0 ? 1 : 0;
        }
        return flags;
    }

    private static String layerType(JsonObject c, int layer, int layers, java.util.function.Supplier<String> derived) {
        JsonElement e = c.get("layer_types");
        if (e != null && e.isJsonArray()) {
            JsonArray a = e.getAsJsonArray();
            if (a.size() < layers) {
                throw new IllegalArgumentException("layer_types has " + a.size() + " entries for " + layers + " layers");
            }
            return a.get(layer).getAsString();
        }
        return derived.get();
    }

    /**
     * transformers' {@code convert_rope_params_to_dict}: a legacy {@code rope_scaling} dict wins over
     * {@code rope_parameters}; {@code rope_theta} inside the dict wins over the top-level field, which
     * wins over the config class's default theta.
     */
    private static Rope rope(Architecture arch, JsonObject c) {
        JsonObject params = new JsonObject();
        if (c.has("rope_scaling") && c.get("rope_scaling").isJsonObject()) {
            params = c.getAsJsonObject("rope_scaling");
        } else if (c.has("rope_parameters") && c.get("rope_parameters").isJsonObject()) {
            params = c.getAsJsonObject("rope_parameters");
        }
        for (var entry : params.entrySet()) {
            if (entry.getValue().isJsonObject()) {
                throw new IllegalArgumentException("per-layer-type rope_parameters are not supported");
            }
        }
        double defaultTheta = switch (arch) {
            case MIXTRAL -> 1e6;
            case LLAMA4 -> 5e5;
            default -> 1e4;
        };
        double theta = isSet(params, "rope_theta") ? params.get("rope_theta").getAsDouble()
                : optDouble(c, "rope_theta", defaultTheta);
        String type = isSet(params, "rope_type") ? params.get("rope_type").getAsString()
                : isSet(params, "type") ? params.get("type").getAsString() : "default";
        type = type.toLowerCase(Locale.ROOT);
        double partial = isSet(params, "partial_rotary_factor") ? params.get("partial_rotary_factor").getAsDouble()
                : optDouble(c, "partial_rotary_factor", 1.0);
        if (partial != 1.0) {
            throw new IllegalArgumentException("partial_rotary_factor " + partial + " is not supported");
        }
        boolean interleaved = arch == Architecture.LLAMA4;
        return switch (type) {
            case "default" -> Rope.plain(theta, interleaved);
            case "linear" -> new Rope(type, theta, reqDouble(params, "factor"), 1, 1, 0, interleaved);
            case "llama3" -> new Rope(type, theta, reqDouble(params, "factor"), reqDouble(params, "low_freq_factor"),
                    reqDouble(params, "high_freq_factor"),
                    isSet(params, "original_max_position_embeddings")
                            ? params.get("original_max_position_embeddings").getAsDouble()
                            : req(c, "max_position_embeddings"),
                    interleaved);
            default -> throw new IllegalArgumentException("rope type " + type
                    + " is not supported (supported: default, linear, llama3)");
        };
    }

    private static boolean isSet(JsonObject c, String key) {
        JsonElement e = c.get(key);
        return e != null && !e.isJsonNull();
    }

    private static int req(JsonObject c, String key) {
        if (!isSet(c, key)) {
            throw new IllegalArgumentException("missing " + key);
        }
        return c.get(key).getAsInt();
    }

    private static double reqDouble(JsonObject c, String key) {
        if (!isSet(c, key)) {
            throw new IllegalArgumentException("rope parameters are missing " + key);
        }
        return c.get(key).getAsDouble();
    }

    private static int opt(JsonObject c, String key, int def) {
        return isSet(c, key) ? c.get(key).getAsInt() : def;
    }

    private static int positiveOrZero(JsonObject c, String key) {
        return Math.max(0, opt(c, key, 0));
    }

    private static double optDouble(JsonObject c, String key, double def) {
        return isSet(c, key) ? c.get(key).getAsDouble() : def;
    }

    private static boolean optBool(JsonObject c, String key, boolean def) {
        return isSet(c, key) ? c.get(key).getAsBoolean() : def;
    }

    /** Python truthiness of a bool or number, as {@code if config.attn_temperature_tuning} reads it. */
    private static boolean truthy(JsonObject c, String key, boolean def) {
        if (!isSet(c, key)) {
            return def;
        }
        var p = c.get(key).getAsJsonPrimitive();
        return p.isBoolean() ? p.getAsBoolean() : p.getAsDouble() != 0;
    }
}
