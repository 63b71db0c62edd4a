package dev.moecluster.core.model;

import com.google.gson.GsonBuilder;
import com.google.gson.JsonArray;
import com.google.gson.JsonObject;
import dev.moecluster.core.tensor.DType;
import dev.moecluster.core.tensor.Numerics;
import dev.moecluster.core.tensor.Tensor;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.SplittableRandom;

/**
 * Writes a small random model as a real Hugging Face directory: {@code config.json} with the
 * architecture's own field names, safetensors with the published tensor names and shapes (the whole
 * model, not just the MoE blocks), and a byte-level BPE {@code tokenizer.json}. Deterministic for a
 * given spec. With FP8 experts it writes the layout of Meta's Llama 4 FP8 release: the routed
 * experts' weights quantized per output channel to e4m3 (compressed-tensors {@code weight_scale}),
 * everything else in {@code dtype}, and for Llama 4 the multimodal wrapper's names and config; the
 * weights are those of the same spec without FP8, quantized, so that model is the FP8 one's reference.
 */
public final class ModelGenerator {
    /**
     * What to generate. {@code topK} of 0 means the architecture's usual value (Llama 4: 1,
     * others: 2); {@code shards} above 1 writes a sharded checkpoint with an index;
     * {@code expertDtype} is {@code dtype}, or FP8 e4m3 for an FP8 checkpoint.
     */
    public record Spec(Architecture architecture, int layers, int hidden, int intermediate, int experts, int topK,
            long seed, DType dtype, int shards, DType expertDtype) {
        /** A spec whose experts are stored in {@code dtype} like the rest. */
        public Spec(Architecture architecture, int layers, int hidden, int intermediate, int experts, int topK,
                long seed, DType dtype, int shards) {
            this(architecture, layers, hidden, intermediate, experts, topK, seed, dtype, shards, dtype);
        }

        public Spec {
            if (layers <= 0 || hidden <= 0 || intermediate <= 0 || experts <= 0) {
                throw new IllegalArgumentException("layers, hidden, intermediate and experts must be positive");
            }
            if (hidden % 8 != 0) {
                throw new IllegalArgumentException("--hidden must be a multiple of 8 (it is split into attention heads)");
            }
            if (topK < 0 || topK > experts) {
                throw new IllegalArgumentException("--top-k must be between 1 and --experts");
            }
            if (dtype != DType.F32 && dtype != DType.BF16) {
                throw new IllegalArgumentException("--dtype must be f32 or bf16");
            }
            if (shards <= 0) {
                throw new IllegalArgumentException("shards must be positive");
            }
            if (expertDtype != dtype && expertDtype != DType.FP8_E4M3) {
                throw new IllegalArgumentException("experts are stored in the model's dtype or in FP8, not " + expertDtype);
            }
        }

        /** A tiny model of the given architecture, as tests and the demo use. */
        public static Spec tiny(Architecture architecture) {
            return new Spec(architecture, 2, 64, 128, 8, 0, 42, DType.F32, 1);
        }

        public Spec withDtype(DType d) {
            return new Spec(architecture, layers, hidden, intermediate, experts, topK, seed, d, shards, fp8Experts() ? expertDtype : d);
        }

        public Spec withShards(int s) {
            return new Spec(architecture, layers, hidden, intermediate, experts, topK, seed, dtype, s, expertDtype);
        }

        public Spec withSize(int newLayers, int newHidden, int newIntermediate, int newExperts) {
            return new Spec(architecture, newLayers, newHidden, newIntermediate, newExperts, topK, seed, dtype, shards, expertDtype);
        }

        /** This spec with its routed experts quantized to FP8 e4m3 ({@code fp8}) or stored in {@code dtype}. */
        public Spec withFp8Experts(boolean fp8) {
            return new Spec(architecture, layers, hidden, intermediate, experts, topK, seed, dtype, shards,
                    fp8 ? DType.FP8_E4M3 : dtype);
        }

        public boolean fp8Experts() {
            return expertDtype == DType.FP8_E4M3;
        }

        /** Whether the model is written as Meta's multimodal Llama 4 checkpoint (its FP8 release's layout). */
        boolean multimodalLlama4() {
            return architecture == Architecture.LLAMA4 && fp8Experts();
        }

        public int effectiveTopK() {
            return topK > 0 ? topK : architecture == Architecture.LLAMA4 ? 1 : Math.min(2, experts);
        }

        public int heads() {
            return Math.max(1, hidden / 16);
        }

        public int kvHeads() {
            return heads() % 2 == 0 ? heads() / 2 : heads();
        }

        public int headDim() {
            return hidden / heads();
        }
    }

    private final Spec spec;
    private final SplittableRandom random;
    private final ByteLevelBpe tokenizer;
    private final SafetensorsWriter writer = new SafetensorsWriter();
    /** Modules written in {@code dtype}, which an FP8 checkpoint's {@code quantization_config} lists as ignored. */
    private final List<String> notQuantized = new java.util.ArrayList<>();

    private ModelGenerator(Spec spec) {
        this.spec = spec;
        this.random = new SplittableRandom(spec.seed());
        this.tokenizer = ByteLevelBpe.train(specialTokens(spec.architecture()));
    }

    /** Generates the model into {@code dir} (created if absent) and returns its config. */
    public static ModelConfig generate(Spec spec, Path dir) throws IOException {
        Files.createDirectories(dir);
        return new ModelGenerator(spec).writeTo(dir);
    }

    private ModelConfig writeTo(Path dir) throws IOException {
        JsonObject text = config();
        JsonObject config = text;
        if (spec.multimodalLlama4()) {
            config = new JsonObject();
            JsonArray archs = new JsonArray();
            archs.add("Llama4ForConditionalGeneration");
            config.add("architectures", archs);
            config.addProperty("model_type", "llama4");
            config.add("text_config", text);
            config.addProperty("torch_dtype", text.get("torch_dtype").getAsString());
        }
        try (Arena arena = Arena.ofConfined()) {
            tensors(arena, text);
            if (spec.fp8Experts()) {
                config.add("quantization_config", quantizationConfig());
            }
            if (spec.shards() > 1) {
                writer.writeSharded(dir, spec.shards());
            } else {
                writer.write(dir.resolve("model.safetensors"));
            }
        }
        // serializeNulls: keep the explicit nulls (sliding_window, normalizer, unk_token...) that HF files carry.
        var gson = new GsonBuilder().setPrettyPrinting().disableHtmlEscaping().serializeNulls().create();
        Files.writeString(dir.resolve("config.json"), gson.toJson(config));
        Files.writeString(dir.resolve("tokenizer.json"), gson.toJson(tokenizer.toTokenizerJson(addsBos())));
        Files.writeString(dir.resolve("tokenizer_config.json"), gson.toJson(tokenizerConfig()));
        return ModelConfig.parse(config, ModelLocation.nameOf(dir), dir.resolve("config.json").toString());
    }

    /**
     * tokenizer_config.json: the special tokens and a short chat template in the architecture's turn format
     * (not the published template: no tools, no reasoning), so the generated models can be chatted with.
     * DeepSeek-V3's generated tokenizer lacks the role tokens, so it has none.
     */
    private JsonObject tokenizerConfig() {
        List<String> specials = specialTokens(spec.architecture());
        JsonObject c = new JsonObject();
        String template = switch (spec.architecture()) {
            case MIXTRAL -> "{{- bos_token }}{%- for message in messages %}{%- if message['role'] == 'user' %}"
                    + "{{- ' [INST] ' + message['content'] + ' [/INST]' }}{%- else %}{{- ' ' + message['content'] + eos_token }}"
                    + "{%- endif %}{%- endfor %}";
            case QWEN3_MOE, QWEN2_MOE -> "{%- for message in messages %}"
                    + "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}{%- endfor %}"
                    + "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}";
            case LLAMA4 -> "{{- bos_token }}{%- for message in messages %}"
                    + "{{- '<|header_start|>' + message['role'] + '<|header_end|>\\n\\n' + message['content'] | trim + '<|eot|>' }}"
                    + "{%- endfor %}{%- if add_generation_prompt %}{{- '<|header_start|>assistant<|header_end|>\\n\\n' }}{%- endif %}";
            case DEEPSEEK_V3 -> null;
        };
        switch (spec.architecture()) {
            case MIXTRAL -> {
                c.addProperty("bos_token", specials.get(0));
                c.addProperty("eos_token", specials.get(1));
                c.addProperty("unk_token", specials.get(2));
            }
            case QWEN3_MOE, QWEN2_MOE -> {
                c.add("bos_token", com.google.gson.JsonNull.INSTANCE);
                c.addProperty("eos_token", specials.get(2));
                c.addProperty("pad_token", specials.get(0));
            }
            case LLAMA4 -> {
                c.addProperty("bos_token", specials.get(0));
                c.addProperty("eos_token", specials.get(2));
            }
            case DEEPSEEK_V3 -> {
                c.addProperty("bos_token", specials.get(0));
                c.addProperty("eos_token", specials.get(1));
            }
        }
        c.addProperty("tokenizer_class", "PreTrainedTokenizerFast");
        if (template != null) {
            c.addProperty("chat_template", template);
        }
        return c;
    }

    private boolean addsBos() {
        return spec.architecture() == Architecture.MIXTRAL || spec.architecture() == Architecture.LLAMA4;
    }

    static List<String> specialTokens(Architecture arch) {
        return switch (arch) {
            case MIXTRAL -> List.of("<s>", "</s>", "<unk>");
            case QWEN3_MOE, QWEN2_MOE -> List.of("<|endoftext|>", "<|im_start|>", "<|im_end|>");
            case LLAMA4 -> List.of("<|begin_of_text|>", "<|end_of_text|>", "<|eot|>", "<|header_start|>", "<|header_end|>");
            case DEEPSEEK_V3 -> List.of("<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>");
        };
    }

    private JsonObject config() {
        Architecture arch = spec.architecture();
        JsonObject c = new JsonObject();
        JsonArray archs = new JsonArray();
        archs.add(arch.hfName());
        c.add("architectures", archs);
        int vocab = tokenizer.vocabSize();
        int bos = tokenizer.idOf(specialTokens(arch).getFirst());
        int eos = tokenizer.idOf(specialTokens(arch).get(arch == Architecture.QWEN3_MOE || arch == Architecture.QWEN2_MOE ? 0 : 1));
        c.addProperty("vocab_size", vocab);
        c.addProperty("hidden_size", spec.hidden());
        c.addProperty("num_hidden_layers", spec.layers());
        c.addProperty("num_attention_heads", spec.heads());
        c.addProperty("num_key_value_heads", spec.kvHeads());
        c.addProperty("head_dim", spec.headDim());
        c.addProperty("hidden_act", "silu");
        c.addProperty("max_position_embeddings", 4096);
        c.addProperty("initializer_range", 0.02);
        c.addProperty("bos_token_id", bos);
        c.addProperty("eos_token_id", eos);
        c.addProperty("tie_word_embeddings", false);
        c.addProperty("torch_dtype", spec.dtype() == DType.BF16 ? "bfloat16" : "float32");
        c.addProperty("num_experts_per_tok", spec.effectiveTopK());
        switch (arch) {
            case MIXTRAL -> {
                c.addProperty("model_type", "mixtral");
                c.addProperty("intermediate_size", spec.intermediate());
                c.addProperty("num_local_experts", spec.experts());
                c.addProperty("rms_norm_eps", 1e-5);
                c.addProperty("rope_theta", 1e6);
                c.addProperty("router_aux_loss_coef", 0.02);
                c.addProperty("router_jitter_noise", 0.0);
                c.add("sliding_window", null);
            }
            case QWEN3_MOE, QWEN2_MOE -> {
                c.addProperty("model_type", arch == Architecture.QWEN3_MOE ? "qwen3_moe" : "qwen2_moe");
                c.addProperty("intermediate_size", spec.intermediate() * 2);
                c.addProperty("moe_intermediate_size", spec.intermediate());
                c.addProperty("num_experts", spec.experts());
                c.addProperty("norm_topk_prob", arch == Architecture.QWEN3_MOE);
                c.addProperty("decoder_sparse_step", 1);
                c.add("mlp_only_layers", new JsonArray());
                c.addProperty("rms_norm_eps", 1e-6);
                c.addProperty("rope_theta", 1e6);
                c.addProperty("attention_bias", false);
                c.addProperty("use_sliding_window", false);
                c.addProperty("router_aux_loss_coef", 0.001);
                if (arch == Architecture.QWEN2_MOE) {
                    c.addProperty("shared_expert_intermediate_size", spec.intermediate() * 2);
                    c.addProperty("qkv_bias", true);
                }
            }
            case LLAMA4 -> {
                c.addProperty("model_type", "llama4_text");
                c.addProperty("intermediate_size", spec.intermediate());
                c.addProperty("intermediate_size_mlp", spec.intermediate() * 2);
                c.addProperty("num_local_experts", spec.experts());
                c.addProperty("interleave_moe_layer_step", spec.layers() > 1 ? 2 : 1);
                c.addProperty("rms_norm_eps", 1e-5);
                c.addProperty("rope_theta", 500000.0);
                JsonObject scaling = new JsonObject();
                scaling.addProperty("rope_type", "llama3");
                scaling.addProperty("factor", 8.0);
                scaling.addProperty("low_freq_factor", 1.0);
                scaling.addProperty("high_freq_factor", 4.0);
                scaling.addProperty("original_max_position_embeddings", 8192);
                c.add("rope_scaling", scaling);
                JsonArray noRope = new JsonArray();
                for (int i = 0; i < spec.layers(); i++) {
                    noRope.add((i + 1) % 4 != 0 ? 1 : 0);
                }
                c.add("no_rope_layers", noRope);
                c.addProperty("attention_chunk_size", 16);
                c.addProperty("attn_temperature_tuning", true);
                c.addProperty("floor_scale", 8192);
                c.addProperty("attn_scale", 0.1);
                c.addProperty("use_qk_norm", true);
                c.addProperty("attention_bias", false);
                c.addProperty("router_jitter_noise", 0.0);
            }
            case DEEPSEEK_V3 -> throw new IllegalArgumentException(
                    "gen-model writes mixtral, qwen3-moe, qwen2-moe or llama4 (DeepSeek-V3 needs MLA attention)");
        }
        return c;
    }

    /**
     * compressed-tensors' description of an FP8 checkpoint as Meta's Llama 4 FP8 release carries it:
     * e4m3 weights with static per-channel scales, activations quantized per token at run time (which
     * the cluster does not do: it computes with the activations as they arrive), and every Linear that
     * is not a routed expert listed in {@code ignore}.
     */
    private JsonObject quantizationConfig() {
        JsonObject weights = new JsonObject();
        weights.addProperty("num_bits", 8);
        weights.addProperty("type", "float");
        weights.addProperty("strategy", "channel");
        weights.addProperty("symmetric", true);
        weights.addProperty("dynamic", false);
        weights.addProperty("observer", "minmax");
        JsonObject activations = new JsonObject();
        activations.addProperty("num_bits", 8);
        activations.addProperty("type", "float");
        activations.addProperty("strategy", "token");
        activations.addProperty("symmetric", true);
        activations.addProperty("dynamic", true);
        activations.add("observer", null);
        JsonObject group = new JsonObject();
        JsonArray targets = new JsonArray();
        targets.add("Linear");
        group.add("targets", targets);
        group.add("weights", weights);
        group.add("input_activations", activations);
        group.add("output_activations", null);
        JsonObject groups = new JsonObject();
        groups.add("group_0", group);
        JsonObject q = new JsonObject();
        q.addProperty("quant_method", "compressed-tensors");
        q.addProperty("format", "float-quantized");
        q.addProperty("quantization_status", "compressed");
        q.add("config_groups", groups);
        JsonArray ignore = new JsonArray();
        notQuantized.forEach(ignore::add);
        q.add("ignore", ignore);
        q.add("kv_cache_scheme", null);
        return q;
    }

    private void tensors(Arena arena, JsonObject config) {
        Architecture arch = spec.architecture();
        ModelConfig parsed = ModelConfig.parse(config, "generated");
        int h = spec.hidden();
        int v = tokenizer.vocabSize();
        int q = spec.heads() * spec.headDim();
        int kv = spec.kvHeads() * spec.headDim();
        int inter = spec.intermediate();
        int e = spec.experts();
        String model = spec.multimodalLlama4() ? "language_model.model." : "model.";
        put(arena, model + "embed_tokens.weight", 1.0, v, h);
        for (int l = 0; l < spec.layers(); l++) {
            String p = model + "layers." + l + ".";
            norm(arena, p + "input_layernorm.weight", h);
            norm(arena, p + "post_attention_layernorm.weight", h);
            linear(arena, p + "self_attn.q_proj", h, q, h);
            linear(arena, p + "self_attn.k_proj", h, kv, h);
            linear(arena, p + "self_attn.v_proj", h, kv, h);
            linear(arena, p + "self_attn.o_proj", q, h, q);
            if (arch == Architecture.QWEN2_MOE) {
                put(arena, p + "self_attn.q_proj.bias", 64, q);
                put(arena, p + "self_attn.k_proj.bias", 64, kv);
                put(arena, p + "self_attn.v_proj.bias", 64, kv);
            }
            if (arch == Architecture.QWEN3_MOE) {
                norm(arena, p + "self_attn.q_norm.weight", spec.headDim());
                norm(arena, p + "self_attn.k_norm.weight", spec.headDim());
            }
            boolean moe = parsed.isMoeLayer(l);
            switch (arch) {
                case MIXTRAL -> {
                    String m = p + "block_sparse_moe.";
                    gate(arena, m + "gate", e, h);
                    for (int x = 0; x < e; x++) {
                        expertLinear(arena, m + "experts." + x + ".w1", values(h, inter, h), inter, h);
                        expertLinear(arena, m + "experts." + x + ".w3", values(h, inter, h), inter, h);
                        expertLinear(arena, m + "experts." + x + ".w2", values(inter, h, inter), h, inter);
                    }
                }
                case QWEN3_MOE, QWEN2_MOE -> {
                    String m = p + "mlp.";
                    if (moe) {
                        gate(arena, m + "gate", e, h);
                        for (int x = 0; x < e; x++) {
                            String ex = m + "experts." + x + ".";
                            expertLinear(arena, ex + "gate_proj", values(h, inter, h), inter, h);
                            expertLinear(arena, ex + "up_proj", values(h, inter, h), inter, h);
                            expertLinear(arena, ex + "down_proj", values(inter, h, inter), h, inter);
                        }
                        if (arch == Architecture.QWEN2_MOE) {
                            mlp(arena, m + "shared_expert.", h, parsed.sharedExpertIntermediateSize());
                            linear(arena, m + "shared_expert_gate", h, 1, h);
                        }
                    } else {
                        mlp(arena, m, h, inter * 2);
                    }
                }
                case LLAMA4 -> {
                    String f = p + "feed_forward.";
                    if (moe) {
                        gate(arena, f + "router", e, h);
                        if (spec.fp8Experts()) {
                            llama4Fp8Experts(arena, f + "experts.", e, h, inter);
                        } else {
                            put(arena, f + "experts.gate_up_proj", h, e, h, 2 * inter);
                            put(arena, f + "experts.down_proj", inter, e, inter, h);
                        }
                        mlp(arena, f + "shared_expert.", h, inter);
                    } else {
                        mlp(arena, f, h, inter * 2);
                    }
                }
                case DEEPSEEK_V3 -> throw new AssertionError();
            }
        }
        norm(arena, model + "norm.weight", h);
        linear(arena, (spec.multimodalLlama4() ? "language_model." : "") + "lm_head", h, v, h);
    }

    private void mlp(Arena arena, String prefix, int h, int inter) {
        linear(arena, prefix + "gate_proj", h, inter, h);
        linear(arena, prefix + "up_proj", h, inter, h);
        linear(arena, prefix + "down_proj", inter, h, inter);
    }

    /** A Linear that is not a routed expert, in {@code dtype}: an FP8 checkpoint lists it as not quantized. */
    private void linear(Arena arena, String module, double fanIn, long... shape) {
        notQuantized.add(module);
        put(arena, module + ".weight", fanIn, shape);
    }

    /** Gate weights are larger than Linear init so routing is decisive, as in trained models. */
    private void gate(Arena arena, String module, int experts, int h) {
        linear(arena, module, h / 16.0, experts, h);
    }

    /**
     * One routed expert's Linear weight {@code [out, in]} from {@code vals}: in {@code dtype}, or
     * quantized to FP8 from its {@code dtype} rounding with a per-row {@code weight_scale [out, 1]}.
     */
    private void expertLinear(Arena arena, String module, float[] vals, int out, int in) {
        if (!spec.fp8Experts()) {
            writer.put(module + ".weight", Tensor.of(arena, spec.dtype(), new long[] {out, in}, vals));
            return;
        }
        float[] scales = new float[out];
        float[] codes = new float[vals.length];
        for (int r = 0; r < out; r++) {
            float max = 0;
            for (int c = 0; c < in; c++) {
                max = Math.max(max, Math.abs(Numerics.roundTo(spec.dtype(), vals[r * in + c])));
            }
            // The scale is stored in bf16; quantizing with the stored value keeps code × scale the dequantized weight.
            float scale = Numerics.roundTo(DType.BF16, max > 0 ? max / Numerics.FP8_E4M3_MAX : 1f);
            scales[r] = scale;
            for (int c = 0; c < in; c++) {
                codes[r * in + c] = Numerics.roundTo(spec.dtype(), vals[r * in + c]) / scale;
            }
        }
        writer.put(module + ".weight", Tensor.of(arena, DType.FP8_E4M3, new long[] {out, in}, codes));
        writer.put(module + ".weight_scale", Tensor.of(arena, DType.BF16, new long[] {out, 1}, scales));
    }

    /**
     * Llama 4's experts as Meta's FP8 release stores them, one by one in Linear layout: the same values
     * the fused {@code gate_up_proj [E, H, 2I]} and {@code down_proj [E, I, H]} of the non-FP8 spec
     * hold, transposed and quantized.
     */
    private void llama4Fp8Experts(Arena arena, String prefix, int e, int h, int inter) {
        float[] gateUp = values(h, e, h, 2 * inter);
        float[] down = values(inter, e, inter, h);
        for (int x = 0; x < e; x++) {
            float[] gate = new float[inter * h];
            float[] up = new float[inter * h];
            for (int i = 0; i < inter; i++) {
                for (int c = 0; c < h; c++) {
                    int at = (x * h + c) * 2 * inter;
                    gate[i * h + c] = gateUp[at + i];
                    up[i * h + c] = gateUp[at + inter + i];
                }
            }
            float[] d = new float[h * inter];
            for (int o = 0; o < h; o++) {
                for (int i = 0; i < inter; i++) {
                    d[o * inter + i] = down[(x * inter + i) * h + o];
                }
            }
            expertLinear(arena, prefix + x + ".gate_proj", gate, inter, h);
            expertLinear(arena, prefix + x + ".up_proj", up, inter, h);
            expertLinear(arena, prefix + x + ".down_proj", d, h, inter);
        }
    }

    private void norm(Arena arena, String name, int n) {
        float[] vals = new float[n];
        for (int i = 0; i < n; i++) {
            vals[i] = (float) (1.0 + 0.1 * random.nextGaussian());
        }
        writer.put(name, Tensor.of(arena, spec.dtype(), new long[] {n}, vals));
    }

    /** A tensor of Gaussian values with standard deviation {@code 1/sqrt(fanIn)}. */
    private void put(Arena arena, String name, double fanIn, long... shape) {
        writer.put(name, Tensor.of(arena, spec.dtype(), shape, values(fanIn, shape)));
    }

    /** The next Gaussian values with standard deviation {@code 1/sqrt(fanIn)}, as many as {@code shape} holds. */
    private float[] values(double fanIn, long... shape) {
        int n = Math.toIntExact(Tensor.elementCount(shape));
        float[] vals = new float[n];
        double std = 1.0 / Math.sqrt(fanIn);
        for (int i = 0; i < n; i++) {
            vals[i] = (float) (random.nextGaussian() * std);
        }
        return vals;
    }
}
