package dev.moecluster.core.model;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import dev.moecluster.core.model.ModelGenerator.Spec;
import dev.moecluster.core.tensor.DType;
import dev.moecluster.core.tensor.Tensor;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

class ModelGeneratorTest {

    @TempDir
    Path tmp;

    // Spec.tiny: 2 layers, hidden 64, expert intermediate 128, 8 experts; 4 heads of 16, 2 KV heads.
    private static final int L = 2, H = 64, I = 128, E = 8, Q = 64, KV = 32, HEAD_DIM = 16;

    private static JsonObject readJson(Path file) throws IOException {
        return JsonParser.parseString(Files.readString(file)).getAsJsonObject();
    }

    /** Every tensor a published checkpoint of the architecture has, with its shape (DESIGN.md, "Checkpoint layouts"). */
    private static Map<String, List<Long>> publishedLayout(Architecture arch, long vocab) {
        Map<String, List<Long>> m = new TreeMap<>();
        m.put("model.embed_tokens.weight", List.of(vocab, (long) H));
        m.put("model.norm.weight", List.of((long) H));
        m.put("lm_head.weight", List.of(vocab, (long) H));
        for (int l = 0; l < L; l++) {
            String p = "model.layers." + l + ".";
            m.put(p + "input_layernorm.weight", List.of((long) H));
            m.put(p + "post_attention_layernorm.weight", List.of((long) H));
            m.put(p + "self_attn.q_proj.weight", List.of((long) Q, (long) H));
            m.put(p + "self_attn.k_proj.weight", List.of((long) KV, (long) H));
            m.put(p + "self_attn.v_proj.weight", List.of((long) KV, (long) H));
            m.put(p + "self_attn.o_proj.weight", List.of((long) H, (long) Q));
            switch (arch) {
                case MIXTRAL -> {
                    m.put(p + "block_sparse_moe.gate.weight", List.of((long) E, (long) H));
                    for (int e = 0; e < E; e++) {
                        String x = p + "block_sparse_moe.experts." + e + ".";
                        m.put(x + "w1.weight", List.of((long) I, (long) H));
                        m.put(x + "w3.weight", List.of((long) I, (long) H));
                        m.put(x + "w2.weight", List.of((long) H, (long) I));
                    }
                }
                case QWEN3_MOE, QWEN2_MOE -> {
                    m.put(p + "mlp.gate.weight", List.of((long) E, (long) H));
                    for (int e = 0; e < E; e++) {
                        String x = p + "mlp.experts." + e + ".";
                        m.put(x + "gate_proj.weight", List.of((long) I, (long) H));
                        m.put(x + "up_proj.weight", List.of((long) I, (long) H));
                        m.put(x + "down_proj.weight", List.of((long) H, (long) I));
                    }
                    if (arch == Architecture.QWEN3_MOE) {
                        m.put(p + "self_attn.q_norm.weight", List.of((long) HEAD_DIM));
                        m.put(p + "self_attn.k_norm.weight", List.of((long) HEAD_DIM));
                    } else {
                        m.put(p + "self_attn.q_proj.bias", List.of((long) Q));
                        m.put(p + "self_attn.k_proj.bias", List.of((long) KV));
                        m.put(p + "self_attn.v_proj.bias", List.of((long) KV));
                        // shared_expert_intermediate_size = 2 * I in the generated config.
                        m.put(p + "mlp.shared_expert.gate_proj.weight", List.of(2L * I, (long) H));
                        m.put(p + "mlp.shared_expert.up_proj.weight", List.of(2L * I, (long) H));
                        m.put(p + "mlp.shared_expert.down_proj.weight", List.of((long) H, 2L * I));
                        m.put(p + "mlp.shared_expert_gate.weight", List.of(1L, (long) H));
                    }
                }
                case LLAMA4 -> {
                    String f = p + "feed_forward.";
                    if (l == 1) { // interleave_moe_layer_step 2: layer 1 is MoE
                        m.put(f + "router.weight", List.of((long) E, (long) H));
                        m.put(f + "experts.gate_up_proj", List.of((long) E, (long) H, 2L * I));
                        m.put(f + "experts.down_proj", List.of((long) E, (long) I, (long) H));
                        m.put(f + "shared_expert.gate_proj.weight", List.of((long) I, (long) H));
                        m.put(f + "shared_expert.up_proj.weight", List.of((long) I, (long) H));
                        m.put(f + "shared_expert.down_proj.weight", List.of((long) H, (long) I));
                    } else { // dense: intermediate_size_mlp = 2 * I
                        m.put(f + "gate_proj.weight", List.of(2L * I, (long) H));
                        m.put(f + "up_proj.weight", List.of(2L * I, (long) H));
                        m.put(f + "down_proj.weight", List.of((long) H, 2L * I));
                    }
                }
                case DEEPSEEK_V3 -> throw new AssertionError();
            }
        }
        return m;
    }

    private static List<Long> shapeList(long[] shape) {
        return java.util.Arrays.stream(shape).boxed().toList();
    }

    @ParameterizedTest
    @EnumSource(names = {"MIXTRAL", "QWEN3_MOE", "QWEN2_MOE", "LLAMA4"})
    void writesExactlyThePublishedTensorNamesAndShapes(Architecture arch) throws IOException {
        Path dir = tmp.resolve(arch.cliName());
        ModelConfig config = ModelGenerator.generate(Spec.tiny(arch), dir);
        long vocab = readJson(dir.resolve("config.json")).get("vocab_size").getAsLong();
        Map<String, List<Long>> expected = publishedLayout(arch, vocab);
        try (Checkpoint c = Checkpoint.open(dir)) {
            assertThat(c.tensorNames()).containsExactlyInAnyOrderElementsOf(expected.keySet());
            for (String name : c.tensorNames()) {
                assertThat(shapeList(c.shapeOf(name))).as(name).isEqualTo(expected.get(name));
                assertThat(c.tensor(name).dtype()).as(name).isEqualTo(DType.F32);
            }
            // The names CheckpointLayout will look up are all there.
            CheckpointLayout layout = new CheckpointLayout(config);
            for (int layer : config.moeLayerList()) {
                assertThat(c.contains(layout.gateWeight(layer))).isTrue();
                if (arch == Architecture.LLAMA4) {
                    assertThat(c.tensorNames()).contains(layout.fusedExpertTensorNames(layer));
                } else {
                    for (int e = 0; e < E; e++) {
                        assertThat(c.tensorNames()).contains(layout.expertTensorNames(layer, e));
                    }
                }
            }
        }
    }

    @ParameterizedTest
    @EnumSource(names = {"MIXTRAL", "QWEN3_MOE", "QWEN2_MOE", "LLAMA4"})
    void configRoundTripsThroughConfigJson(Architecture arch) throws IOException {
        Path dir = tmp.resolve("m");
        ModelConfig generated = ModelGenerator.generate(Spec.tiny(arch), dir);
        ModelConfig loaded = ModelConfig.load(dir);
        assertThat(loaded).isEqualTo(generated);
        assertThat(loaded.architecture()).isEqualTo(arch);
        assertThat(loaded.hiddenSize()).isEqualTo(H);
        assertThat(loaded.numLayers()).isEqualTo(L);
        assertThat(loaded.numExperts()).isEqualTo(E);
        assertThat(loaded.expertIntermediateSize()).isEqualTo(I);
        assertThat(loaded.expertsPerToken()).isEqualTo(arch == Architecture.LLAMA4 ? 1 : 2);
        assertThat(loaded.dtype()).isEqualTo(DType.F32);
        JsonObject json = readJson(dir.resolve("config.json"));
        assertThat(json.getAsJsonArray("architectures").get(0).getAsString()).isEqualTo(arch.hfName());
        assertThat(json.get("num_attention_heads").getAsInt()).isEqualTo(4);
        assertThat(json.get("num_key_value_heads").getAsInt()).isEqualTo(2);
        assertThat(json.get("head_dim").getAsInt()).isEqualTo(HEAD_DIM);
        assertThat(json.get("torch_dtype").getAsString()).isEqualTo("float32");
        switch (arch) {
            case MIXTRAL -> {
                assertThat(loaded.moeLayerList()).containsExactly(0, 1);
                assertThat(json.has("sliding_window")).as("explicit null, as Mixtral's config has").isTrue();
                assertThat(json.get("sliding_window").isJsonNull()).isTrue();
            }
            case QWEN3_MOE -> {
                assertThat(loaded.normTopkProb()).isTrue();
                assertThat(loaded.sharedExpertIntermediateSize()).isZero();
                assertThat(loaded.moeLayerList()).containsExactly(0, 1);
            }
            case QWEN2_MOE -> {
                assertThat(loaded.normTopkProb()).isFalse();
                assertThat(loaded.sharedExpertIntermediateSize()).isEqualTo(2 * I);
            }
            case LLAMA4 -> {
                assertThat(loaded.moeLayerList()).containsExactly(1);
                assertThat(loaded.sharedExpertIntermediateSize()).isEqualTo(I);
                assertThat(json.get("intermediate_size_mlp").getAsInt()).isEqualTo(2 * I);
                assertThat(json.getAsJsonArray("no_rope_layers").toString()).isEqualTo("[1,1]");
            }
            default -> throw new AssertionError();
        }
    }

    @Test
    void llama4WithOneLayerMakesItMoe() throws IOException {
        Spec spec = Spec.tiny(Architecture.LLAMA4).withSize(1, 64, 32, 4);
        ModelConfig c = ModelGenerator.generate(spec, tmp.resolve("l"));
        assertThat(c.moeLayerList()).containsExactly(0);
    }

    @ParameterizedTest
    @EnumSource(names = {"MIXTRAL", "QWEN3_MOE", "QWEN2_MOE", "LLAMA4"})
    void tokenizerJsonIsAByteLevelBpeWithAllBytesMergesAndSpecialTokens(Architecture arch) throws IOException {
        Path dir = tmp.resolve("t");
        ModelGenerator.generate(Spec.tiny(arch), dir);
        JsonObject tok = readJson(dir.resolve("tokenizer.json"));
        JsonObject config = readJson(dir.resolve("config.json"));
        JsonObject model = tok.getAsJsonObject("model");
        assertThat(model.get("type").getAsString()).isEqualTo("BPE");
        assertThat(model.get("unk_token").isJsonNull()).isTrue();
        assertThat(tok.get("normalizer").isJsonNull()).isTrue();
        assertThat(tok.getAsJsonObject("pre_tokenizer").get("type").getAsString()).isEqualTo("ByteLevel");
        assertThat(tok.getAsJsonObject("decoder").get("type").getAsString()).isEqualTo("ByteLevel");

        JsonObject vocab = model.getAsJsonObject("vocab");
        // The 256 byte tokens hold ids 0..255, in the GPT-2 byte-to-unicode mapping.
        char[] byteToChar = ByteLevelBpe.byteToUnicode();
        assertThat(new String(byteToChar).chars().distinct().count()).isEqualTo(256);
        for (int b = 0; b < 256; b++) {
            String s = String.valueOf(byteToChar[b]);
            assertThat(vocab.has(s)).as("byte %d", b).isTrue();
            assertThat(vocab.get(s).getAsInt()).isEqualTo(b);
        }
        assertThat(byteToChar[' ']).isEqualTo('Ġ');
        assertThat(byteToChar['A']).isEqualTo('A');
        // Ids are 0..n-1 without gaps.
        Set<Integer> ids = new HashSet<>();
        vocab.entrySet().forEach(e -> ids.add(e.getValue().getAsInt()));
        assertThat(ids).hasSize(vocab.size());
        assertThat(ids.stream().mapToInt(Integer::intValue).max().orElseThrow()).isEqualTo(vocab.size() - 1);

        JsonArray merges = model.getAsJsonArray("merges");
        assertThat(merges.size()).isBetween(1, 256);
        for (JsonElement m : merges) {
            String[] parts = m.getAsString().split(" ");
            assertThat(parts).as(m.getAsString()).hasSize(2);
            assertThat(vocab.has(parts[0])).as(m.getAsString()).isTrue();
            assertThat(vocab.has(parts[1])).as(m.getAsString()).isTrue();
            assertThat(vocab.has(parts[0] + parts[1])).as(m.getAsString()).isTrue();
            assertThat(vocab.get(parts[0] + parts[1]).getAsInt()).isGreaterThanOrEqualTo(256);
        }

        List<String> specials = ModelGenerator.specialTokens(arch);
        JsonArray added = tok.getAsJsonArray("added_tokens");
        assertThat(added.size()).isEqualTo(specials.size());
        for (int i = 0; i < specials.size(); i++) {
            JsonObject a = added.get(i).getAsJsonObject();
            assertThat(a.get("content").getAsString()).isEqualTo(specials.get(i));
            assertThat(a.get("id").getAsInt()).isEqualTo(vocab.size() + i);
            assertThat(a.get("special").getAsBoolean()).isTrue();
            assertThat(vocab.has(specials.get(i))).as("specials live only in added_tokens").isFalse();
        }
        assertThat(config.get("vocab_size").getAsInt()).isEqualTo(vocab.size() + specials.size());
        assertThat(config.get("bos_token_id").getAsInt()).isEqualTo(vocab.size());

        JsonObject post = tok.getAsJsonObject("post_processor");
        if (arch == Architecture.MIXTRAL || arch == Architecture.LLAMA4) {
            assertThat(post.get("type").getAsString()).isEqualTo("TemplateProcessing");
            assertThat(post.getAsJsonObject("special_tokens").getAsJsonObject(specials.getFirst())
                    .getAsJsonArray("ids").get(0).getAsInt()).isEqualTo(vocab.size());
            assertThat(config.get("eos_token_id").getAsInt()).isEqualTo(vocab.size() + 1);
        } else {
            assertThat(post.get("type").getAsString()).isEqualTo("ByteLevel");
            assertThat(config.get("eos_token_id").getAsInt()).isEqualTo(vocab.size());
        }
    }

    @Test
    void mergesTokeniseTheTrainingTextIntoFewerPiecesThanBytes() throws IOException {
        ModelGenerator.generate(Spec.tiny(Architecture.QWEN3_MOE), tmp.resolve("q"));
        JsonObject model = readJson(tmp.resolve("q").resolve("tokenizer.json")).getAsJsonObject("model");
        List<String> merges = model.getAsJsonArray("merges").asList().stream().map(JsonElement::getAsString).toList();
        JsonObject vocab = model.getAsJsonObject("vocab");
        // Apply the merges in rank order to " the" (Ġ t h e), as a BPE model does.
        List<String> pieces = new java.util.ArrayList<>(List.of("Ġ", "t", "h", "e"));
        for (String merge : merges) {
            String[] p = merge.split(" ");
            for (int i = 0; i + 1 < pieces.size(); i++) {
                if (pieces.get(i).equals(p[0]) && pieces.get(i + 1).equals(p[1])) {
                    pieces.set(i, p[0] + p[1]);
                    pieces.remove(i + 1);
                }
            }
        }
        assertThat(pieces).hasSizeLessThan(4);
        pieces.forEach(piece -> assertThat(vocab.has(piece)).as(piece).isTrue());
    }

    @Test
    void generationIsDeterministicForASpec() throws IOException {
        Spec spec = Spec.tiny(Architecture.QWEN2_MOE);
        ModelGenerator.generate(spec, tmp.resolve("a"));
        ModelGenerator.generate(spec, tmp.resolve("b"));
        for (String f : List.of("model.safetensors", "config.json", "tokenizer.json")) {
            assertThat(Files.readAllBytes(tmp.resolve("b").resolve(f))).as(f)
                    .isEqualTo(Files.readAllBytes(tmp.resolve("a").resolve(f)));
        }
    }

    @Test
    void shardedGenerationHoldsTheSameTensorsAsOneFile() throws IOException {
        Spec spec = Spec.tiny(Architecture.MIXTRAL);
        ModelGenerator.generate(spec, tmp.resolve("one"));
        ModelGenerator.generate(spec.withShards(3), tmp.resolve("three"));
        assertThat(tmp.resolve("three").resolve("model.safetensors.index.json")).exists();
        assertThat(tmp.resolve("three").resolve("model-00003-of-00003.safetensors")).exists();
        assertThat(tmp.resolve("three").resolve("model.safetensors")).doesNotExist();
        try (Checkpoint one = Checkpoint.open(tmp.resolve("one")); Checkpoint three = Checkpoint.open(tmp.resolve("three"))) {
            assertThat(three.tensorNames()).containsExactlyElementsOf(one.tensorNames());
            for (String name : one.tensorNames()) {
                assertThat(three.tensor(name).toFloatArray()).as(name).containsExactly(one.tensor(name).toFloatArray());
            }
        }
    }

    @Test
    void bf16GenerationStoresBf16AndSaysSoInTheConfig() throws IOException {
        Path dir = tmp.resolve("bf");
        ModelConfig c = ModelGenerator.generate(Spec.tiny(Architecture.LLAMA4).withDtype(DType.BF16), dir);
        assertThat(c.dtype()).isEqualTo(DType.BF16);
        assertThat(readJson(dir.resolve("config.json")).get("torch_dtype").getAsString()).isEqualTo("bfloat16");
        try (Checkpoint ck = Checkpoint.open(dir)) {
            for (String name : ck.tensorNames()) {
                assertThat(ck.tensor(name).dtype()).as(name).isEqualTo(DType.BF16);
            }
        }
    }

    @Test
    void gateWeightsAreWiderThanLinearInitSoRoutingIsDecisive() throws IOException {
        Path dir = tmp.resolve("g");
        ModelGenerator.generate(Spec.tiny(Architecture.MIXTRAL), dir);
        try (Checkpoint c = Checkpoint.open(dir)) {
            // std 1/sqrt(H/16) = 0.5 for the gate, 1/sqrt(H) = 0.125 for w1.
            assertThat(std(c.tensor("model.layers.0.block_sparse_moe.gate.weight"))).isBetween(0.4, 0.6);
            assertThat(std(c.tensor("model.layers.0.block_sparse_moe.experts.0.w1.weight"))).isBetween(0.11, 0.14);
        }
    }

    private static double std(Tensor t) {
        float[] v = t.toFloatArray();
        double s = 0, s2 = 0;
        for (float x : v) {
            s += x;
            s2 += (double) x * x;
        }
        double mean = s / v.length;
        return Math.sqrt(s2 / v.length - mean * mean);
    }

    @Test
    void deepseekCannotBeGenerated() {
        assertThatThrownBy(() -> ModelGenerator.generate(Spec.tiny(Architecture.DEEPSEEK_V3), tmp.resolve("d")))
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("DeepSeek-V3");
    }

    @Test
    void specRejectsBadSizes() {
        assertThatThrownBy(() -> new Spec(Architecture.MIXTRAL, 2, 60, 128, 8, 0, 1, DType.F32, 1))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("multiple of 8");
        assertThatThrownBy(() -> new Spec(Architecture.MIXTRAL, 0, 64, 128, 8, 0, 1, DType.F32, 1))
                .isInstanceOf(IllegalArgumentException.class);
        assertThatThrownBy(() -> new Spec(Architecture.MIXTRAL, 2, 64, 128, 8, 9, 1, DType.F32, 1))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("--top-k");
        assertThatThrownBy(() -> new Spec(Architecture.MIXTRAL, 2, 64, 128, 8, 0, 1, DType.F16, 1))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("--dtype");
        assertThatThrownBy(() -> Spec.tiny(Architecture.MIXTRAL).withShards(0))
                .isInstanceOf(IllegalArgumentException.class);
    }

    @Test
    void specTopKDefaultsPerArchitecture() {
        assertThat(Spec.tiny(Architecture.LLAMA4).effectiveTopK()).isEqualTo(1);
        assertThat(Spec.tiny(Architecture.MIXTRAL).effectiveTopK()).isEqualTo(2);
        assertThat(new Spec(Architecture.QWEN3_MOE, 1, 64, 32, 8, 3, 1, DType.F32, 1).effectiveTopK()).isEqualTo(3);
        assertThat(new Spec(Architecture.QWEN3_MOE, 1, 64, 32, 1, 0, 1, DType.F32, 1).effectiveTopK()).isEqualTo(1);
    }
}
