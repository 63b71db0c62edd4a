package dev.moecluster.core.model;

import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParseException;
import com.google.gson.JsonParser;
import dev.moecluster.core.tensor.DType;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.TreeSet;

/**
 * The parts of a Hugging Face {@code config.json} the cluster needs, normalised across
 * architectures and across the layouts the hub ships and transformers 5.x {@code save_pretrained}
 * writes. For a multimodal Llama 4 checkpoint the fields come from {@code text_config} and tensor
 * names carry {@link #weightPrefix()}.
 *
 * @param expertIntermediateSize the routed experts' FFN width
 * @param sharedExpertIntermediateSize the shared expert's FFN width, 0 when the model has none
 * @param moeLayers indices of the sparse-MoE decoder layers
 * @param weightPrefix prefix of the decoder's tensor names, {@code model.} or {@code language_model.model.}
 * @param raw the text model's config object, for fields only the model runner reads (with the
 *     top-level {@code quantization_config} where a multimodal config keeps it outside {@code text_config})
 * @param source the file the config was read from, for error messages about its fields
 */
public record ModelConfig(
        Architecture architecture,
        String name,
        int hiddenSize,
        int numLayers,
        int numExperts,
        int expertsPerToken,
        int expertIntermediateSize,
        int sharedExpertIntermediateSize,
        boolean normTopkProb,
        int nGroup,
        int topkGroup,
        float routedScalingFactor,
        Set<Integer> moeLayers,
        DType dtype,
        String weightPrefix,
        JsonObject raw,
        String source) {

    public ModelConfig {
        moeLayers = Set.copyOf(new TreeSet<>(moeLayers));
        if (hiddenSize <= 0 || numLayers <= 0 || numExperts <= 0 || expertIntermediateSize <= 0) {
            throw new IllegalArgumentException(source + " has non-positive sizes: hidden " + hiddenSize + ", layers "
                    + numLayers + ", experts " + numExperts + ", intermediate " + expertIntermediateSize);
        }
        if (expertsPerToken <= 0 || expertsPerToken > numExperts) {
            throw new IllegalArgumentException(source + ": experts per token " + expertsPerToken
                    + " must be in 1.." + numExperts);
        }
    }

    public boolean isMoeLayer(int layer) {
        return moeLayers.contains(layer);
    }

    /**
     * The dtype the routed experts are stored in: FP8 e4m3 where {@code quantization_config} says the
     * checkpoint's weights are 8-bit floats (compressed-tensors {@code float-quantized} as in Meta's
     * Llama 4 FP8 release, {@code fbgemm_fp8}, {@code fp8}), else {@link #dtype()}.
     */
    public DType expertDtype() {
        JsonElement q = raw.get("quantization_config");
        if (q == null || !q.isJsonObject()) {
            return dtype;
        }
        JsonObject o = q.getAsJsonObject();
        String method = o.has("quant_method") && o.get("quant_method").isJsonPrimitive() ? o.get("quant_method").getAsString() : "";
        return switch (method) {
            case "fbgemm_fp8", "fp8" -> DType.FP8_E4M3;
            case "compressed-tensors" -> compressedTensorsFp8Weights(o) ? DType.FP8_E4M3 : dtype;
            default -> dtype;
        };
    }

    private static boolean compressedTensorsFp8Weights(JsonObject q) {
        JsonElement groups = q.get("config_groups");
        if (groups == null || !groups.isJsonObject()) {
            return false;
        }
        for (var group : groups.getAsJsonObject().entrySet()) {
            JsonElement w = group.getValue().isJsonObject() ? group.getValue().getAsJsonObject().get("weights") : null;
            if (w != null && w.isJsonObject()) {
                JsonObject weights = w.getAsJsonObject();
                if (weights.has("num_bits") && weights.get("num_bits").getAsInt() == 8 && weights.has("type")
                        && "float".equals(weights.get("type").getAsString())) {
                    return true;
                }
            }
        }
        return false;
    }

    /** MoE layer indices in ascending order. */
    public List<Integer> moeLayerList() {
        return new ArrayList<>(new TreeSet<>(moeLayers));
    }

    /** Reads {@code config.json} from a model directory. */
    public static ModelConfig load(Path modelDir) throws IOException {
        Path file = modelDir.resolve("config.json");
        if (!Files.exists(file)) {
            throw new IOException("no config.json in " + modelDir + " (expected a Hugging Face model directory)");
        }
        return parse(readObject(file), ModelLocation.nameOf(modelDir), file.toString());
    }

    /**
     * Parses {@code file} as a JSON object.
     *
     * @throws IllegalArgumentException naming the file when it is not valid JSON or not an object
     */
    public static JsonObject readObject(Path file) throws IOException {
        JsonElement e;
        try {
            e = JsonParser.parseString(Files.readString(file));
        } catch (JsonParseException ex) {
            throw new IllegalArgumentException(file + " is not valid JSON: " + ex.getMessage(), ex);
        }
        if (!e.isJsonObject()) {
            throw new IllegalArgumentException(file + " is not a JSON object");
        }
        return e.getAsJsonObject();
    }

    /** As {@link #parse(JsonObject, String, String)}, for JSON that came from no file in particular. */
    public static ModelConfig parse(JsonObject json, String name) {
        return parse(json, name, "config.json");
    }

    /**
     * Normalises a {@code config.json} object. Both layouts give the same values: the hub's (with
     * {@code torch_dtype}, {@code rope_theta}, Qwen3-MoE's {@code num_experts}) and transformers 5.x's
     * (with {@code dtype}, {@code rope_parameters}, Qwen3-MoE's {@code num_local_experts}, and Llama 4's
     * derived {@code moe_layers} and {@code layer_types} written out).
     *
     * @param source the file the object was read from; every error names it and the key concerned
     */
    public static ModelConfig parse(JsonObject json, String name, String source) {
        Fields top = new Fields(json, source, "");
        if (!json.has("architectures") || !json.get("architectures").isJsonArray()
                || json.getAsJsonArray("architectures").isEmpty()) {
            throw new IllegalArgumentException(source + " has no architectures field");
        }
        String hfArch = json.getAsJsonArray("architectures").get(0).getAsString();
        Architecture arch;
        try {
            arch = Architecture.fromHf(hfArch);
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException(source + ": " + e.getMessage(), e);
        }
        Fields c = top;
        String prefix = "model.";
        if (hfArch.equals("Llama4ForConditionalGeneration")) {
            if (!json.has("text_config") || !json.get("text_config").isJsonObject()) {
                throw new IllegalArgumentException(source + ": Llama4ForConditionalGeneration config has no text_config");
            }
            JsonObject text = json.getAsJsonObject("text_config");
            if (json.has("quantization_config")) {
                // Meta's FP8 release quantizes the text model's experts but states so beside text_config.
                text = text.deepCopy();
                text.add("quantization_config", json.get("quantization_config"));
            }
            c = new Fields(text, source, "text_config.");
            prefix = "language_model.model.";
        }
        int hidden = c.req("hidden_size");
        int layers = c.req("num_hidden_layers");
        DType dtype = dtype(c, top);
        JsonObject raw = c.obj();
        return switch (arch) {
            // Names as in the transformers 5.x config classes' attribute_map: both spellings load.
            case MIXTRAL -> new ModelConfig(arch, name, hidden, layers, c.req("num_local_experts", "num_experts"),
                    c.req("num_experts_per_tok"), c.req("intermediate_size"), 0, true, 1, 1, 1f,
                    range(0, layers, 1), dtype, prefix, raw, source);
            case QWEN3_MOE, QWEN2_MOE -> {
                int step = c.opt("decoder_sparse_step", 1);
                Set<Integer> mlpOnly = c.intSet("mlp_only_layers");
                // Qwen3MoeConfig maps num_experts to num_local_experts, so 5.x writes the latter;
                // Qwen2MoeConfig has no such mapping.
                int experts = arch == Architecture.QWEN3_MOE ? c.req("num_experts", "num_local_experts")
                        : c.req("num_experts");
                Set<Integer> moe = new TreeSet<>();
                for (int i = 0; i < layers; i++) {
                    if (!mlpOnly.contains(i) && experts > 0 && (i + 1) % step == 0) {
                        moe.add(i);
                    }
                }
                int shared = arch == Architecture.QWEN2_MOE ? c.opt("shared_expert_intermediate_size", 0) : 0;
                yield new ModelConfig(arch, name, hidden, layers, experts, c.req("num_experts_per_tok"),
                        c.req("moe_intermediate_size"), shared, c.optBool("norm_topk_prob", false), 1, 1, 1f, moe,
                        dtype, prefix, raw, source);
            }
            case LLAMA4 -> {
                Set<Integer> moe;
                if (c.isSet("moe_layers")) {
                    moe = c.intSet("moe_layers");
                } else {
                    int step = c.opt("interleave_moe_layer_step", 1);
                    moe = range(step - 1, layers, step);
                }
                int inter = c.req("intermediate_size");
                yield new ModelConfig(arch, name, hidden, layers, c.req("num_local_experts"),
                        c.req("num_experts_per_tok"), inter, inter, false, 1, 1, 1f, moe, dtype, prefix, raw, source);
            }
            case DEEPSEEK_V3 -> {
                // Absent fields take DeepseekV3Config's defaults, as transformers does.
                int moeInter = c.req("moe_intermediate_size");
                int firstDense = c.opt("first_k_dense_replace", 3);
                yield new ModelConfig(arch, name, hidden, layers, c.req("n_routed_experts", "num_local_experts"),
                        c.req("num_experts_per_tok"), moeInter, moeInter * c.opt("n_shared_experts", 1),
                        c.optBool("norm_topk_prob", true), c.opt("n_group", 8), c.opt("topk_group", 4),
                        c.optFloat("routed_scaling_factor", 2.5f), range(firstDense, layers, 1), dtype, prefix, raw,
                        source);
            }
        };
    }

    /**
     * The checkpoint dtype: the text config's {@code torch_dtype} (hub) or {@code dtype} (transformers
     * 5.x), else the top level's; bf16 when neither says.
     */
    private static DType dtype(Fields text, Fields top) {
        for (Fields f : List.of(text, top)) {
            for (String key : List.of("torch_dtype", "dtype")) {
                if (f.isSet(key)) {
                    try {
                        return DType.parse(f.obj().get(key).getAsString());
                    } catch (IllegalArgumentException | IllegalStateException | UnsupportedOperationException e) {
                        throw new IllegalArgumentException(f.source() + ": " + f.path(key) + " "
                                + f.obj().get(key) + " is not a dtype the cluster serves: " + e.getMessage(), e);
                    }
                }
            }
        }
        return DType.BF16;
    }

    private static Set<Integer> range(int from, int to, int step) {
        Set<Integer> s = new TreeSet<>();
        for (int i = from; i < to; i += step) {
            s.add(i);
        }
        return s;
    }

    /** Reads the keys of one config object; every error names the file and the key's path in it. */
    private record Fields(JsonObject obj, String source, String prefix) {

        String path(String key) {
            return prefix + key;
        }

        boolean isSet(String key) {
            JsonElement e = obj.get(key);
            return e != null && !e.isJsonNull();
        }

        int req(String key) {
            if (!isSet(key)) {
                throw new IllegalArgumentException(source + " is missing " + path(key));
            }
            return integer(key);
        }

        /** A key transformers also accepts under {@code alias} (its config class's attribute_map). */
        int req(String key, String alias) {
            if (isSet(key)) {
                return integer(key);
            }
            if (isSet(alias)) {
                return integer(alias);
            }
            throw new IllegalArgumentException(source + " is missing " + path(key) + " (or " + path(alias) + ")");
        }

        int opt(String key, int def) {
            return isSet(key) ? integer(key) : def;
        }

        float optFloat(String key, float def) {
            if (!isSet(key)) {
                return def;
            }
            try {
                return obj.get(key).getAsFloat();
            } catch (NumberFormatException | IllegalStateException | UnsupportedOperationException e) {
                throw wrongType(key, "a number");
            }
        }

        boolean optBool(String key, boolean def) {
            if (!isSet(key)) {
                return def;
            }
            JsonElement e = obj.get(key);
            if (!e.isJsonPrimitive() || !e.getAsJsonPrimitive().isBoolean()) {
                throw wrongType(key, "true or false");
            }
            return e.getAsBoolean();
        }

        Set<Integer> intSet(String key) {
            Set<Integer> s = new TreeSet<>();
            JsonElement e = obj.get(key);
            if (e == null || e.isJsonNull()) {
                return s;
            }
            if (!e.isJsonArray()) {
                throw wrongType(key, "a list of layer indices");
            }
            for (JsonElement x : e.getAsJsonArray()) {
                if (!x.isJsonPrimitive() || !x.getAsJsonPrimitive().isNumber()) {
                    throw wrongType(key, "a list of layer indices");
                }
                s.add(x.getAsInt());
            }
            return s;
        }

        private int integer(String key) {
            JsonElement e = obj.get(key);
            if (!e.isJsonPrimitive() || !e.getAsJsonPrimitive().isNumber()) {
                throw wrongType(key, "an integer");
            }
            double d = e.getAsDouble();
            if (d != Math.rint(d) || Math.abs(d) > Integer.MAX_VALUE) {
                throw wrongType(key, "an integer");
            }
            return (int) d;
        }

        private IllegalArgumentException wrongType(String key, String expected) {
            return new IllegalArgumentException(source + ": " + path(key) + " must be " + expected + ", got "
                    + obj.get(key));
        }
    }
}
