package dev.moecluster.core.model;

import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
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
 * architectures. For a multimodal Llama 4 checkpoint the fields come from {@code text_config} and
 * tensor names carry {@link #weightPrefix()}.
 *
 * @param expertIntermediateSize the routed experts' FFN width
 * @param sharedExpertIntermediateSize the shared expert's FFN width, 0 when the model has none
 * @param moeLayers indices of the sparse-MoE decoder layers
 * @param weightPrefix prefix of the decoder's tensor names, {@code model.} or {@code language_model.model.}
 * @param raw the text model's config object, for fields only the model runner reads (with the
 *     top-level {@code quantization_config} where a multimodal config keeps it outside {@code text_config})
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
        JsonObject raw) {

    public ModelConfig {
        moeLayers = Set.copyOf(new TreeSet<>(moeLayers));
        if (hiddenSize <= 0 || numLayers <= 0 || numExperts <= 0 || expertIntermediateSize <= 0) {
            throw new IllegalArgumentException("config has non-positive sizes: hidden " + hiddenSize + ", layers "
                    + numLayers + ", experts " + numExperts + ", intermediate " + expertIntermediateSize);
        }
        if (expertsPerToken <= 0 || expertsPerToken > numExperts) {
            throw new IllegalArgumentException("experts per token " + expertsPerToken + " must be in 1.." + numExperts);
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
        JsonObject json = JsonParser.parseString(Files.readString(file)).getAsJsonObject();
        return parse(json, ModelLocation.nameOf(modelDir));
    }

    public static ModelConfig parse(JsonObject json, String name) {
        if (!json.has("architectures") || json.getAsJsonArray("architectures").isEmpty()) {
            throw new IllegalArgumentException("config.json has no architectures field");
        }
        String hfArch = json.getAsJsonArray("architectures").get(0).getAsString();
        Architecture arch = Architecture.fromHf(hfArch);
        JsonObject c = json;
        String prefix = "model.";
        if (hfArch.equals("Llama4ForConditionalGeneration")) {
            c = json.getAsJsonObject("text_config");
            if (c == null) {
                throw new IllegalArgumentException("Llama4ForConditionalGeneration config has no text_config");
            }
            prefix = "language_model.model.";
            if (json.has("quantization_config")) {
                // Meta's FP8 release quantizes the text model's experts but states so beside text_config.
                c = c.deepCopy();
                c.add("quantization_config", json.get("quantization_config"));
            }
        }
        int hidden = req(c, "hidden_size");
        int layers = req(c, "num_hidden_layers");
        DType dtype = parseTorchDtype(c.has("torch_dtype") ? c : json);
        return switch (arch) {
            case MIXTRAL -> new ModelConfig(arch, name, hidden, layers, req(c, "num_local_experts"),
                    req(c, "num_experts_per_tok"), req(c, "intermediate_size"), 0, true, 1, 1, 1f,
                    range(0, layers, 1), dtype, prefix, c);
            case QWEN3_MOE, QWEN2_MOE -> {
                int step = opt(c, "decoder_sparse_step", 1);
                Set<Integer> mlpOnly = intSet(c, "mlp_only_layers");
                int experts = req(c, "num_experts");
                Set<Integer> moe = new TreeSet<>();
                for (int i = 0; i < layers; i++) {
                    if (!mlpOnly.contains(i) && experts > 0 && (i + 1) % step == 0) {
                        moe.add(i);
                    }
                }
                int shared = arch == Architecture.QWEN2_MOE ? opt(c, "shared_expert_intermediate_size", 0) : 0;
                yield new ModelConfig(arch, name, hidden, layers, experts, req(c, "num_experts_per_tok"),
                        req(c, "moe_intermediate_size"), shared, optBool(c, "norm_topk_prob", false), 1, 1, 1f, moe,
                        dtype, prefix, c);
            }
            case LLAMA4 -> {
                Set<Integer> moe;
                if (c.has("moe_layers") && !c.get("moe_layers").isJsonNull()) {
                    moe = intSet(c, "moe_layers");
                } else {
                    int step = opt(c, "interleave_moe_layer_step", 1);
                    moe = range(step - 1, layers, step);
                }
                int inter = req(c, "intermediate_size");
                yield new ModelConfig(arch, name, hidden, layers, req(c, "num_local_experts"),
                        req(c, "num_experts_per_tok"), inter, inter, false, 1, 1, 1f, moe, dtype, prefix, c);
            }
            case DEEPSEEK_V3 -> {
                // Absent fields take DeepseekV3Config's defaults, as transformers does.
                int moeInter = req(c, "moe_intermediate_size");
                int firstDense = opt(c, "first_k_dense_replace", 3);
                yield new ModelConfig(arch, name, hidden, layers, req(c, "n_routed_experts"),
                        req(c, "num_experts_per_tok"), moeInter, moeInter * opt(c, "n_shared_experts", 1),
                        optBool(c, "norm_topk_prob", true), opt(c, "n_group", 8), opt(c, "topk_group", 4),
                        c.has("routed_scaling_factor") ? c.get("routed_scaling_factor").getAsFloat() : 2.5f,
                        range(firstDense, layers, 1), dtype, prefix, c);
            }
        };
    }

    private static DType parseTorchDtype(JsonObject c) {
        JsonElement e = c.has("torch_dtype") ? c.get("torch_dtype") : c.get("dtype");
        if (e == null || e.isJsonNull()) {
            return DType.BF16;
        }
        return DType.parse(e.getAsString());
    }

    private static Set<Integer> range(int from, int to, int step) {
        Set<Integer> s = new TreeSet<>();
        for (int i = from; i < to; i += step) {
            s.add(i);
        }
        return s;
    }

    private static int req(JsonObject c, String key) {
        JsonElement e = c.get(key);
        if (e == null || e.isJsonNull()) {
            throw new IllegalArgumentException("config.json is missing " + key);
        }
        return e.getAsInt();
    }

    private static int opt(JsonObject c, String key, int def) {
        JsonElement e = c.get(key);
        return e == null || e.isJsonNull() ? def : e.getAsInt();
    }

    private static boolean optBool(JsonObject c, String key, boolean def) {
        JsonElement e = c.get(key);
        return e == null || e.isJsonNull() ? def : e.getAsBoolean();
    }

    private static Set<Integer> intSet(JsonObject c, String key) {
        Set<Integer> s = new TreeSet<>();
        JsonElement e = c.get(key);
        if (e != null && e.isJsonArray()) {
            e.getAsJsonArray().forEach(x -> s.add(x.getAsInt()));
        }
        return s;
    }
}
