package dev.moecluster.core.model;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import dev.moecluster.core.tensor.DType;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.stream.IntStream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class ModelConfigTest {

    private static JsonObject json(String s) {
        return JsonParser.parseString(s).getAsJsonObject();
    }

    private static Integer[] range(int from, int to, int step) {
        return IntStream.iterate(from, i -> i < to, i -> i + step).boxed().toArray(Integer[]::new);
    }

    /** The MoE fields of mistralai/Mixtral-8x7B-v0.1's config.json. */
    private static final String MIXTRAL = """
            {"architectures": ["MixtralForCausalLM"], "model_type": "mixtral", "hidden_size": 4096,
             "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
             "num_local_experts": 8, "num_experts_per_tok": 2, "router_aux_loss_coef": 0.02, "rms_norm_eps": 1e-05,
             "rope_theta": 1000000.0, "sliding_window": null, "torch_dtype": "bfloat16", "vocab_size": 32000}
            """;

    @Test
    void parsesMixtral() {
        ModelConfig c = ModelConfig.parse(json(MIXTRAL), "mixtral-8x7b");
        assertThat(c.architecture()).isEqualTo(Architecture.MIXTRAL);
        assertThat(c.name()).isEqualTo("mixtral-8x7b");
        assertThat(c.hiddenSize()).isEqualTo(4096);
        assertThat(c.numLayers()).isEqualTo(32);
        assertThat(c.numExperts()).isEqualTo(8);
        assertThat(c.expertsPerToken()).isEqualTo(2);
        assertThat(c.expertIntermediateSize()).isEqualTo(14336);
        assertThat(c.sharedExpertIntermediateSize()).isZero();
        assertThat(c.normTopkProb()).as("Mixtral always renormalises").isTrue();
        assertThat(c.nGroup()).isEqualTo(1);
        assertThat(c.topkGroup()).isEqualTo(1);
        assertThat(c.routedScalingFactor()).isEqualTo(1f);
        assertThat(c.moeLayerList()).containsExactly(range(0, 32, 1));
        assertThat(c.dtype()).isEqualTo(DType.BF16);
        assertThat(c.weightPrefix()).isEqualTo("model.");
        assertThat(c.raw().get("vocab_size").getAsInt()).isEqualTo(32000);
    }

    /** The MoE fields of Qwen/Qwen3-30B-A3B's config.json. */
    private static final String QWEN3 = """
            {"architectures": ["Qwen3MoeForCausalLM"], "model_type": "qwen3_moe", "hidden_size": 2048,
             "intermediate_size": 6144, "moe_intermediate_size": 768, "num_hidden_layers": 48, "num_experts": 128,
             "num_experts_per_tok": 8, "norm_topk_prob": true, "decoder_sparse_step": 1, "mlp_only_layers": [],
             "torch_dtype": "bfloat16"}
            """;

    @Test
    void parsesQwen3Moe() {
        ModelConfig c = ModelConfig.parse(json(QWEN3), "qwen3");
        assertThat(c.architecture()).isEqualTo(Architecture.QWEN3_MOE);
        assertThat(c.hiddenSize()).isEqualTo(2048);
        assertThat(c.numExperts()).isEqualTo(128);
        assertThat(c.expertsPerToken()).isEqualTo(8);
        assertThat(c.expertIntermediateSize()).as("experts use moe_intermediate_size").isEqualTo(768);
        assertThat(c.sharedExpertIntermediateSize()).isZero();
        assertThat(c.normTopkProb()).isTrue();
        assertThat(c.moeLayerList()).containsExactly(range(0, 48, 1));
        assertThat(c.dtype()).isEqualTo(DType.BF16);
    }

    @Test
    void qwenLayersFollowMlpOnlyLayersAndDecoderSparseStep() {
        JsonObject j = json(QWEN3);
        j.addProperty("num_hidden_layers", 8);
        j.addProperty("decoder_sparse_step", 2);
        j.add("mlp_only_layers", JsonParser.parseString("[3, 6]"));
        ModelConfig c = ModelConfig.parse(j, "q");
        // transformers: sparse iff i not in mlp_only_layers and (i + 1) % step == 0 -> 1, 3, 5, 7 minus 3.
        assertThat(c.moeLayerList()).containsExactly(1, 5, 7);
        assertThat(c.isMoeLayer(3)).isFalse();
        assertThat(c.isMoeLayer(0)).isFalse();
        assertThat(c.isMoeLayer(5)).isTrue();
    }

    @Test
    void qwenDefaultsMatchTransformers() {
        JsonObject j = json(QWEN3);
        j.remove("norm_topk_prob");
        j.remove("decoder_sparse_step");
        j.remove("mlp_only_layers");
        j.addProperty("num_hidden_layers", 4);
        ModelConfig c = ModelConfig.parse(j, "q");
        assertThat(c.normTopkProb()).as("Qwen3MoeConfig default").isFalse();
        assertThat(c.moeLayerList()).containsExactly(0, 1, 2, 3);
        j.add("mlp_only_layers", null);
        assertThat(ModelConfig.parse(j, "q").moeLayerList()).containsExactly(0, 1, 2, 3);
    }

    /** The MoE fields of Qwen/Qwen1.5-MoE-A2.7B's config.json. */
    private static final String QWEN2 = """
            {"architectures": ["Qwen2MoeForCausalLM"], "model_type": "qwen2_moe", "hidden_size": 2048,
             "intermediate_size": 5632, "moe_intermediate_size": 1408, "shared_expert_intermediate_size": 5632,
             "num_hidden_layers": 24, "num_experts": 60, "num_experts_per_tok": 4, "norm_topk_prob": false,
             "decoder_sparse_step": 1, "mlp_only_layers": [], "torch_dtype": "bfloat16"}
            """;

    @Test
    void parsesQwen2MoeWithItsSharedExpert() {
        ModelConfig c = ModelConfig.parse(json(QWEN2), "qwen2");
        assertThat(c.architecture()).isEqualTo(Architecture.QWEN2_MOE);
        assertThat(c.numExperts()).isEqualTo(60);
        assertThat(c.expertsPerToken()).isEqualTo(4);
        assertThat(c.expertIntermediateSize()).isEqualTo(1408);
        assertThat(c.sharedExpertIntermediateSize()).isEqualTo(5632);
        assertThat(c.normTopkProb()).isFalse();
        assertThat(c.moeLayerList()).containsExactly(range(0, 24, 1));
    }

    /** The text fields of a Llama 4 Maverick-shaped text-only config (every other layer MoE). */
    private static final String LLAMA4_TEXT = """
            {"architectures": ["Llama4ForCausalLM"], "model_type": "llama4_text", "hidden_size": 5120,
             "intermediate_size": 8192, "intermediate_size_mlp": 16384, "num_hidden_layers": 48,
             "num_local_experts": 128, "num_experts_per_tok": 1, "interleave_moe_layer_step": 2,
             "torch_dtype": "bfloat16"}
            """;

    @Test
    void parsesLlama4TextOnlyWithInterleavedMoeLayers() {
        ModelConfig c = ModelConfig.parse(json(LLAMA4_TEXT), "maverick");
        assertThat(c.architecture()).isEqualTo(Architecture.LLAMA4);
        assertThat(c.numExperts()).isEqualTo(128);
        assertThat(c.expertsPerToken()).isEqualTo(1);
        assertThat(c.expertIntermediateSize()).isEqualTo(8192);
        assertThat(c.sharedExpertIntermediateSize()).as("the shared expert uses intermediate_size").isEqualTo(8192);
        assertThat(c.normTopkProb()).isFalse();
        // transformers: range(step - 1, L, step)
        assertThat(c.moeLayerList()).containsExactly(range(1, 48, 2));
        assertThat(c.weightPrefix()).isEqualTo("model.");
    }

    @Test
    void llama4StepOneMakesEveryLayerMoeAndExplicitMoeLayersWin() {
        JsonObject j = json(LLAMA4_TEXT);
        j.addProperty("num_hidden_layers", 6);
        j.remove("interleave_moe_layer_step");
        assertThat(ModelConfig.parse(j, "x").moeLayerList()).containsExactly(0, 1, 2, 3, 4, 5);
        j.addProperty("interleave_moe_layer_step", 3);
        assertThat(ModelConfig.parse(j, "x").moeLayerList()).containsExactly(2, 5);
        j.add("moe_layers", JsonParser.parseString("[0, 4]"));
        assertThat(ModelConfig.parse(j, "x").moeLayerList()).containsExactly(0, 4);
        j.add("moe_layers", null);
        assertThat(ModelConfig.parse(j, "x").moeLayerList()).containsExactly(2, 5);
    }

    /** The shape of meta-llama/Llama-4-Scout-17B-16E-Instruct's config.json: text fields under text_config. */
    private static final String LLAMA4_MULTIMODAL = """
            {"architectures": ["Llama4ForConditionalGeneration"], "model_type": "llama4",
             "boi_token_index": 200080, "image_token_index": 200092, "torch_dtype": "bfloat16",
             "text_config": {"model_type": "llama4_text", "hidden_size": 5120, "intermediate_size": 8192,
               "intermediate_size_mlp": 16384, "num_hidden_layers": 48, "num_local_experts": 16,
               "num_experts_per_tok": 1, "interleave_moe_layer_step": 1, "vocab_size": 202048},
             "vision_config": {"hidden_size": 1408, "num_hidden_layers": 34}}
            """;

    @Test
    void parsesLlama4ConditionalGenerationFromTextConfigWithTheLanguageModelPrefix() {
        ModelConfig c = ModelConfig.parse(json(LLAMA4_MULTIMODAL), "scout");
        assertThat(c.architecture()).isEqualTo(Architecture.LLAMA4);
        assertThat(c.hiddenSize()).isEqualTo(5120);
        assertThat(c.numLayers()).isEqualTo(48);
        assertThat(c.numExperts()).isEqualTo(16);
        assertThat(c.expertsPerToken()).isEqualTo(1);
        assertThat(c.moeLayerList()).containsExactly(range(0, 48, 1));
        assertThat(c.weightPrefix()).isEqualTo("language_model.model.");
        assertThat(c.dtype()).as("torch_dtype from the top level").isEqualTo(DType.BF16);
        assertThat(c.raw().get("vocab_size").getAsInt()).as("raw is the text config").isEqualTo(202048);
        assertThat(new CheckpointLayout(c).gateWeight(0))
                .isEqualTo("language_model.model.layers.0.feed_forward.router.weight");
    }

    @Test
    void llama4ConditionalGenerationWithoutTextConfigFails() {
        JsonObject j = json(LLAMA4_MULTIMODAL);
        j.remove("text_config");
        assertThatThrownBy(() -> ModelConfig.parse(j, "x"))
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("text_config");
    }

    /** The MoE fields of deepseek-ai/DeepSeek-V3's config.json. */
    private static final String DEEPSEEK = """
            {"architectures": ["DeepseekV3ForCausalLM"], "model_type": "deepseek_v3", "hidden_size": 7168,
             "intermediate_size": 18432, "moe_intermediate_size": 2048, "num_hidden_layers": 61,
             "n_routed_experts": 256, "n_shared_experts": 1, "num_experts_per_tok": 8, "n_group": 8,
             "topk_group": 4, "routed_scaling_factor": 2.5, "first_k_dense_replace": 3, "moe_layer_freq": 1,
             "norm_topk_prob": true, "scoring_func": "sigmoid", "topk_method": "noaux_tc", "torch_dtype": "bfloat16"}
            """;

    @Test
    void parsesDeepseekV3WithGroupsScalingAndFirstDenseLayers() {
        ModelConfig c = ModelConfig.parse(json(DEEPSEEK), "dsv3");
        assertThat(c.architecture()).isEqualTo(Architecture.DEEPSEEK_V3);
        assertThat(c.numExperts()).isEqualTo(256);
        assertThat(c.expertsPerToken()).isEqualTo(8);
        assertThat(c.expertIntermediateSize()).isEqualTo(2048);
        assertThat(c.sharedExpertIntermediateSize()).as("moe_intermediate_size * n_shared_experts").isEqualTo(2048);
        assertThat(c.nGroup()).isEqualTo(8);
        assertThat(c.topkGroup()).isEqualTo(4);
        assertThat(c.routedScalingFactor()).isEqualTo(2.5f);
        assertThat(c.normTopkProb()).isTrue();
        // Layers 0..2 are dense (first_k_dense_replace = 3).
        assertThat(c.moeLayerList()).containsExactly(range(3, 61, 1));
        assertThat(c.isMoeLayer(2)).isFalse();
    }

    @Test
    void deepseekDefaultsMatchTransformers() {
        // A config.json that leaves out the MoE fields gets DeepseekV3Config's defaults, as in transformers.
        String minimal = """
                {"architectures": ["DeepseekV3ForCausalLM"], "hidden_size": 64, "num_hidden_layers": 5,
                 "n_routed_experts": 16, "num_experts_per_tok": 2, "moe_intermediate_size": 32}
                """;
        ModelConfig c = ModelConfig.parse(json(minimal), "x");
        assertThat(c.routedScalingFactor()).isEqualTo(2.5f);
        assertThat(c.nGroup()).isEqualTo(8);
        assertThat(c.topkGroup()).isEqualTo(4);
        assertThat(c.normTopkProb()).isTrue();
        assertThat(c.moeLayerList()).as("first_k_dense_replace defaults to 3").containsExactly(3, 4);
        assertThat(c.sharedExpertIntermediateSize()).as("n_shared_experts defaults to 1").isEqualTo(32);
    }

    @Test
    void dtypeComesFromTorchDtypeOrDtypeAndDefaultsToBf16() {
        JsonObject j = json(MIXTRAL);
        j.addProperty("torch_dtype", "float32");
        assertThat(ModelConfig.parse(j, "x").dtype()).isEqualTo(DType.F32);
        j.remove("torch_dtype");
        j.addProperty("dtype", "float16"); // transformers v5 writes "dtype"
        assertThat(ModelConfig.parse(j, "x").dtype()).isEqualTo(DType.F16);
        j.remove("dtype");
        assertThat(ModelConfig.parse(j, "x").dtype()).isEqualTo(DType.BF16);
    }

    @Test
    void missingRequiredFieldsAreNamed() {
        JsonObject j = json(MIXTRAL);
        j.remove("num_local_experts");
        assertThatThrownBy(() -> ModelConfig.parse(j, "x"))
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessage("config.json is missing num_local_experts (or num_experts)");
        JsonObject q = json(QWEN3);
        q.remove("moe_intermediate_size");
        assertThatThrownBy(() -> ModelConfig.parse(q, "x"))
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("moe_intermediate_size");
    }

    @Test
    void unknownOrMissingArchitecturesAreRejected() {
        assertThatThrownBy(() -> ModelConfig.parse(json("{\"hidden_size\": 8}"), "x"))
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("no architectures");
        assertThatThrownBy(() -> ModelConfig.parse(json("{\"architectures\": []}"), "x"))
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("no architectures");
        assertThatThrownBy(() -> ModelConfig.parse(json("{\"architectures\": [\"LlamaForCausalLM\"]}"), "x"))
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("unsupported architecture LlamaForCausalLM");
    }

    @Test
    void expertsPerTokenMustFitTheExperts() {
        JsonObject j = json(MIXTRAL);
        j.addProperty("num_experts_per_tok", 9);
        assertThatThrownBy(() -> ModelConfig.parse(j, "x"))
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("experts per token 9");
        j.addProperty("num_experts_per_tok", 0);
        assertThatThrownBy(() -> ModelConfig.parse(j, "x")).isInstanceOf(IllegalArgumentException.class);
    }

    @Test
    void moeLayersAreImmutableAndListedInOrder() {
        ModelConfig c = ModelConfig.parse(json(DEEPSEEK), "x");
        assertThatThrownBy(() -> c.moeLayers().add(0)).isInstanceOf(UnsupportedOperationException.class);
        assertThat(c.moeLayerList()).isSorted();
    }

    @Test
    void loadReadsConfigJsonAndNamesTheModelAfterItsDirectory(@TempDir Path tmp) throws IOException {
        Path dir = Files.createDirectories(tmp.resolve("Qwen3-30B-A3B"));
        Files.writeString(dir.resolve("config.json"), QWEN3);
        ModelConfig c = ModelConfig.load(dir);
        assertThat(c.name()).isEqualTo("Qwen3-30B-A3B");
        assertThat(c.numExperts()).isEqualTo(128);
    }

    @Test
    void loadWithoutConfigJsonFails(@TempDir Path tmp) {
        assertThatThrownBy(() -> ModelConfig.load(tmp))
                .isInstanceOf(IOException.class)
                .hasMessageContaining("no config.json");
    }

    @Test
    void architectureNamesMapBothWays() {
        assertThat(Architecture.fromHf("Llama4ForConditionalGeneration")).isEqualTo(Architecture.LLAMA4);
        assertThat(Architecture.fromCli("QWEN3-MOE")).isEqualTo(Architecture.QWEN3_MOE);
        for (Architecture a : Architecture.values()) {
            assertThat(Architecture.fromHf(a.hfName())).isEqualTo(a);
            assertThat(Architecture.fromCli(a.cliName())).isEqualTo(a);
        }
        assertThatThrownBy(() -> Architecture.fromCli("gpt")).isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("--arch gpt");
    }
}
