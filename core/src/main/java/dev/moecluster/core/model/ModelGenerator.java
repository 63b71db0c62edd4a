package dev.moecluster.core.model;

import com.google.gson.GsonBuilder;
import com.google.gson.JsonArray;
import com.google.gson.JsonObject;
import dev.moecluster.core.tensor.DType;
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
 * given spec.
 */
public final class ModelGenerator {
    /**
     * What to generate. {@code topK} of 0 means the architecture's usual value (Llama 4: 1,
     * others: 2); {@code shards} above 1 writes a sharded checkpoint with an index.
     */
    public record Spec(Architecture architecture, int layers, int hidden, int intermediate, int experts, int topK,
            long seed, DType dtype, int shards) {
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
        }

        /** A tiny model of the given architecture, as tests and the demo use. */
        public static Spec tiny(Architecture architecture) {
            return new Spec(architecture, 2, 64, 128, 8, 0, 42, DType.F32, 1);
        }

        public Spec withDtype(DType d) {
            return new Spec(architecture, layers, hidden, intermediate, experts, topK, seed, d, shards);
        }

        public Spec withShards(int s) {
            return new Spec(architecture, layers, hidden, intermediate, experts, topK, seed, dtype, s);
        }

        public Spec withSize(int newLayers, int newHidden, int newIntermediate, int newExperts) {
            return new Spec(architecture, newLayers, newHidden, newIntermediate, newExperts, topK, seed, dtype, shards);
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
        JsonObject config = config();
        try (Arena arena = Arena.ofConfined()) {
            tensors(arena, config);
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

    private void tensors(Arena arena, JsonObject config) {
        Architecture arch = spec.architecture();
        ModelConfig parsed = ModelConfig.parse(config, "generated");
        int h = spec.hidden();
        int v = tokenizer.vocabSize();
        int q = spec.heads() * spec.headDim();
        int kv = spec.kvHeads() * spec.headDim();
        int inter = spec.intermediate();
        int e = spec.experts();
        put(arena, "model.embed_tokens.weight", 1.0, v, h);
        for (int l = 0; l < spec.layers(); l++) {
            String p = "model.layers." + l + ".";
            norm(arena, p + "input_layernorm.weight", h);
            norm(arena, p + "post_attention_layernorm.weight", h);
            put(arena, p + "self_attn.q_proj.weight", h, q, h);
            put(arena, p + "self_attn.k_proj.weight", h, kv, h);
            put(arena, p + "self_attn.v_proj.weight", h, kv, h);
            put(arena, p + "self_attn.o_proj.weight", q, h, q);
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
                    gate(arena, m + "gate.weight", e, h);
                    for (int x = 0; x < e; x++) {
                        put(arena, m + "experts." + x + ".w1.weight", h, inter, h);
                        put(arena, m + "experts." + x + ".w3.weight", h, inter, h);
                        put(arena, m + "experts." + x + ".w2.weight", inter, h, inter);
                    }
                }
                case QWEN3_MOE, QWEN2_MOE -> {
                    String m = p + "mlp.";
                    if (moe) {
                        gate(arena, m + "gate.weight", e, h);
                        for (int x = 0; x < e; x++) {
                            mlp(arena, m + "experts." + x + ".", h, inter);
                        }
                        if (arch == Architecture.QWEN2_MOE) {
                            mlp(arena, m + "shared_expert.", h, parsed.sharedExpertIntermediateSize());
                            put(arena, m + "shared_expert_gate.weight", h, 1, h);
                        }
                    } else {
                        mlp(arena, m, h, inter * 2);
                    }
                }
                case LLAMA4 -> {
                    String f = p + "feed_forward.";
                    if (moe) {
                        gate(arena, f + "router.weight", e, h);
                        put(arena, f + "experts.gate_up_proj", h, e, h, 2 * inter);
                        put(arena, f + "experts.down_proj", inter, e, inter, h);
                        mlp(arena, f + "shared_expert.", h, inter);
                    } else {
                        mlp(arena, f, h, inter * 2);
                    }
                }
                case DEEPSEEK_V3 -> throw new AssertionError();
            }
        }
        norm(arena, "model.norm.weight", h);
        put(arena, "lm_head.weight", h, v, h);
    }

    private void mlp(Arena arena, String prefix, int h, int inter) {
        put(arena, prefix + "gate_proj.weight", h, inter, h);
        put(arena, prefix + "up_proj.weight", h, inter, h);
        put(arena, prefix + "down_proj.weight", inter, h, inter);
    }

    /** Gate weights are larger than Linear init so routing is decisive, as in trained models. */
    private void gate(Arena arena, String name, int experts, int h) {
        put(arena, name, h / 16.0, experts, h);
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
        int n = Math.toIntExact(Tensor.elementCount(shape));
        float[] vals = new float[n];
        double std = 1.0 / Math.sqrt(fanIn);
        for (int i = 0; i < n; i++) {
            vals[i] = (float) (random.nextGaussian() * std);
        }
        writer.put(name, Tensor.of(arena, spec.dtype(), shape, vals));
    }
}
