package dev.moecluster.core.model;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import com.google.gson.JsonObject;
import dev.moecluster.core.runner.DecoderConfig;
import dev.moecluster.core.runner.DecoderConfig.LayerAttention;
import dev.moecluster.core.runner.DecoderConfig.Rope;
import dev.moecluster.core.tensor.DType;
import java.io.IOException;
import java.net.URISyntaxException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.stream.IntStream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * config.json as the hub ships it and as transformers 5.x {@code save_pretrained} writes it give the
 * same model. The 5.x files are transformers' own output for the hub files
 * ({@code core/src/test/python/transformers5_configs.py}).
 */
class Transformers5ConfigTest {

    private static Path dir(String layout, String name) {
        try {
            var url = Transformers5ConfigTest.class.getResource("configs/" + layout + "/" + name + "/config.json");
            assertThat(url).as(layout + "/" + name).isNotNull();
            return Path.of(url.toURI()).getParent();
        } catch (URISyntaxException e) {
            throw new IllegalStateException(e);
        }
    }

    private static ModelConfig hub(String name) throws IOException {
        return ModelConfig.load(dir("hub", name));
    }

    private static ModelConfig v5(String name) throws IOException {
        return ModelConfig.load(dir("transformers5", name));
    }

    @ParameterizedTest
    @ValueSource(strings = {"mixtral-8x7b", "qwen3-30b-a3b", "qwen3-linear-rope", "llama4-scout", "llama4-maverick"})
    void bothLayoutsGiveTheSameModelAndDecoder(String name) throws IOException {
        ModelConfig hub = hub(name);
        ModelConfig v5 = v5(name);
        assertThat(ModelConfig.readObject(dir("transformers5", name).resolve("config.json"))
                .get("transformers_version").getAsString()).startsWith("5.");
        assertThat(v5).usingRecursiveComparison().ignoringFields("raw", "source").isEqualTo(hub);
        assertThat(DecoderConfig.from(v5)).isEqualTo(DecoderConfig.from(hub));
    }

    @Test
    void qwen3ExpertCountIsReadUnderItsFiveXName() throws IOException {
        ModelConfig v5 = v5("qwen3-30b-a3b");
        assertThat(v5.raw().has("num_experts")).as("5.x renames num_experts").isFalse();
        assertThat(v5.raw().get("num_local_experts").getAsInt()).isEqualTo(128);
        assertThat(v5.numExperts()).isEqualTo(128);
        assertThat(v5.expertsPerToken()).isEqualTo(8);
        assertThat(v5.expertIntermediateSize()).isEqualTo(768);
        assertThat(v5.normTopkProb()).isTrue();
        assertThat(v5.dtype()).as("from dtype, not torch_dtype").isEqualTo(DType.BF16);
        assertThat(v5.raw().has("torch_dtype")).isFalse();
        DecoderConfig d = DecoderConfig.from(v5);
        assertThat(v5.raw().has("rope_theta")).as("5.x moves rope_theta into rope_parameters").isFalse();
        assertThat(d.rope()).isEqualTo(Rope.plain(1e6, false));
        assertThat(d.headDim()).isEqualTo(128);
        assertThat(d.numKvHeads()).isEqualTo(4);
    }

    @Test
    void legacyLinearRopeScalingSurvivesTheMoveToRopeParameters() throws IOException {
        ModelConfig v5 = v5("qwen3-linear-rope");
        assertThat(v5.raw().has("rope_scaling")).isFalse();
        assertThat(DecoderConfig.from(v5).rope()).isEqualTo(new Rope("linear", 1e6, 4.0, 1, 1, 0, false));
        assertThat(v5.dtype()).isEqualTo(DType.F16);
        // decoder_sparse_step 2 makes layers 1, 3, ..., 47 sparse; mlp_only_layers [0, 47] removes 47.
        assertThat(v5.moeLayerList()).containsExactly(
                IntStream.iterate(1, i -> i < 47, i -> i + 2).boxed().toArray(Integer[]::new));
    }

    @Test
    void scoutKeepsLlama3RopeScalingAndItsChunkedLayers() throws IOException {
        ModelConfig v5 = v5("llama4-scout");
        assertThat(v5.weightPrefix()).isEqualTo("language_model.model.");
        assertThat(v5.raw().has("moe_layers")).as("5.x writes the derived list").isTrue();
        assertThat(v5.moeLayerList()).containsExactly(IntStream.range(0, 48).boxed().toArray(Integer[]::new));
        DecoderConfig d = DecoderConfig.from(v5);
        assertThat(d.rope()).isEqualTo(new Rope("llama3", 500_000, 8, 1, 4, 8192, true));
        for (int i = 0; i < 48; i++) {
            // Every fourth layer is NoPE with full attention; the rest chunk at attention_chunk_size.
            boolean nope = (i + 1) % 4 == 0;
            assertThat(d.layer(i)).as("layer " + i).isEqualTo(nope
                    ? new LayerAttention(false, false, true, 0, 0)
                    : new LayerAttention(true, true, false, 8192, 0));
        }
    }

    @Test
    void maverickInterleavesMoeLayersWithoutQkNorm() throws IOException {
        ModelConfig v5 = v5("llama4-maverick");
        assertThat(v5.numExperts()).isEqualTo(128);
        assertThat(v5.moeLayerList()).containsExactly(IntStream.iterate(1, i -> i < 48, i -> i + 2).boxed()
                .toArray(Integer[]::new));
        DecoderConfig d = DecoderConfig.from(v5);
        assertThat(d.rope()).isEqualTo(Rope.plain(500_000, true));
        assertThat(d.layer(0)).isEqualTo(new LayerAttention(true, false, false, 8192, 0));
        assertThat(d.layer(3)).isEqualTo(new LayerAttention(false, false, true, 0, 0));
    }

    @Test
    void mixtralReadsThetaFromRopeParametersAndANullHeadDim() throws IOException {
        ModelConfig v5 = v5("mixtral-8x7b");
        assertThat(v5.raw().get("head_dim").isJsonNull()).isTrue();
        DecoderConfig d = DecoderConfig.from(v5);
        assertThat(d.headDim()).isEqualTo(4096 / 32);
        assertThat(d.rope()).isEqualTo(Rope.plain(1e6, false));
        assertThat(v5.numExperts()).isEqualTo(8);
    }

    @Test
    void missingOrMalformedKeysNameTheKeyAndTheFile(@TempDir Path tmp) throws IOException {
        JsonObject qwen = ModelConfig.readObject(dir("transformers5", "qwen3-30b-a3b").resolve("config.json"));
        qwen.remove("num_local_experts");
        Path q = write(tmp.resolve("q"), qwen);
        assertThatThrownBy(() -> ModelConfig.load(q)).isInstanceOf(IllegalArgumentException.class)
                .hasMessage(q.resolve("config.json") + " is missing num_experts (or num_local_experts)");

        JsonObject scout = ModelConfig.readObject(dir("transformers5", "llama4-scout").resolve("config.json"));
        scout.getAsJsonObject("text_config").remove("hidden_size");
        Path s = write(tmp.resolve("s"), scout);
        assertThatThrownBy(() -> ModelConfig.load(s))
                .hasMessage(s.resolve("config.json") + " is missing text_config.hidden_size");

        scout.getAsJsonObject("text_config").addProperty("hidden_size", "5120x");
        write(s, scout);
        assertThatThrownBy(() -> ModelConfig.load(s))
                .hasMessage(s.resolve("config.json") + ": text_config.hidden_size must be an integer, got \"5120x\"");

        scout.getAsJsonObject("text_config").addProperty("hidden_size", 5120);
        scout.getAsJsonObject("text_config").remove("vocab_size");
        write(s, scout);
        ModelConfig noVocab = ModelConfig.load(s);
        assertThatThrownBy(() -> DecoderConfig.from(noVocab))
                .hasMessage(s.resolve("config.json") + " (text_config): missing vocab_size");

        qwen.getAsJsonArray("architectures").set(0, new com.google.gson.JsonPrimitive("GptOssForCausalLM"));
        write(q, qwen);
        assertThatThrownBy(() -> ModelConfig.load(q))
                .hasMessageStartingWith(q.resolve("config.json") + ": unsupported architecture GptOssForCausalLM");

        Files.writeString(q.resolve("config.json"), "[1, 2]");
        assertThatThrownBy(() -> ModelConfig.load(q))
                .hasMessage(q.resolve("config.json") + " is not a JSON object");
    }

    private static Path write(Path dir, JsonObject json) throws IOException {
        Files.createDirectories(dir);
        Files.writeString(dir.resolve("config.json"), json.toString());
        return dir;
    }
}
