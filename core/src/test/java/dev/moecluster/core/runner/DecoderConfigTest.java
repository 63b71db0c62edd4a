package dev.moecluster.core.runner;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import dev.moecluster.core.model.ModelConfig;
import java.io.IOException;
import java.nio.file.Path;
import java.util.function.Consumer;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** config.json fields and the transformers defaults that fill in for absent ones. */
class DecoderConfigTest {

    @Test
    void readsTheTinyLlama4Config(@TempDir Path dir) throws IOException {
        DecoderConfig c = parse(TinyModels.write(TinyModels.Variant.LLAMA4_NOPE_LAYERS, dir), x -> { });
        assertThat(c.numHeads()).isEqualTo(4);
        assertThat(c.numKvHeads()).isEqualTo(2);
        assertThat(c.headDim()).isEqualTo(16);
        assertThat(c.groupSize()).isEqualTo(2);
        assertThat(c.rmsNormEps()).isEqualTo(1e-5f);
        assertThat(c.rope()).isEqualTo(new DecoderConfig.Rope("llama3", 500_000, 8, 1, 4, 8192, true));
        assertThat(c.denseIntermediateSize()).isEqualTo(256); // intermediate_size_mlp
        assertThat(c.layers()).containsExactly(
                new DecoderConfig.LayerAttention(true, true, false, 8, 0),
                new DecoderConfig.LayerAttention(true, true, false, 8, 0),
                new DecoderConfig.LayerAttention(true, true, false, 8, 0),
                new DecoderConfig.LayerAttention(false, false, true, 0, 0));
        assertThat(c.floorScale()).isEqualTo(4f);
        assertThat(c.attnScale()).isEqualTo(0.5f);
    }

    @Test
    void llama4DefaultsFollowLlama4TextConfig(@TempDir Path dir) throws IOException {
        DecoderConfig c = parse(TinyModels.write(TinyModels.Variant.LLAMA4, dir), x -> {
            for (String key : new String[] {"head_dim", "no_rope_layers", "rope_scaling", "rope_theta", "use_qk_norm",
                    "attn_temperature_tuning", "floor_scale", "attn_scale", "intermediate_size_mlp"}) {
                x.remove(key);
            }
            x.addProperty("num_hidden_layers", 4);
        });
        assertThat(c.headDim()).isEqualTo(128); // Llama4TextConfig.head_dim defaults to 128, not hidden / heads
        assertThat(c.rope()).isEqualTo(DecoderConfig.Rope.plain(500_000, true));
        assertThat(c.layer(3)).isEqualTo(new DecoderConfig.LayerAttention(false, false, true, 0, 0));
        assertThat(c.layer(2)).isEqualTo(new DecoderConfig.LayerAttention(true, true, false, 16, 0));
        assertThat(c.floorScale()).isEqualTo(8192f);
        assertThat(c.attnScale()).isEqualTo(0.1f);
        assertThat(c.denseIntermediateSize()).isEqualTo(16384);
    }

    @Test
    void llama4LayerTypesOverrideTheNoRopeDerivedOnes(@TempDir Path dir) throws IOException {
        DecoderConfig c = parse(TinyModels.write(TinyModels.Variant.LLAMA4, dir), x -> {
            var types = new com.google.gson.JsonArray();
            types.add("full_attention");
            types.add("chunked_attention");
            x.add("layer_types", types);
            x.addProperty("attn_temperature_tuning", 4); // early Scout configs wrote a number: truthy
        });
        assertThat(c.layer(0).chunkSize()).isZero();
        assertThat(c.layer(1).chunkSize()).isEqualTo(16);
    }

    @Test
    void qwenAndMixtralReadTheirOwnFields(@TempDir Path dir) throws IOException {
        DecoderConfig qwen3 = parse(TinyModels.write(TinyModels.Variant.QWEN3_MOE, dir.resolve("q3")), x -> { });
        assertThat(qwen3.qkRmsNorm()).isTrue();
        assertThat(qwen3.qkvBias()).isFalse();
        assertThat(qwen3.rope()).isEqualTo(DecoderConfig.Rope.plain(1e6, false));
        assertThat(qwen3.rmsNormEps()).isEqualTo(1e-6f);

        DecoderConfig qwen2 = parse(TinyModels.write(TinyModels.Variant.QWEN2_MOE, dir.resolve("q2")), x -> {
            x.remove("qkv_bias"); // defaults to true
            x.remove("rope_theta"); // PreTrainedConfig default 10000
        });
        assertThat(qwen2.qkvBias()).isTrue();
        assertThat(qwen2.outputBias()).isFalse();
        assertThat(qwen2.qkRmsNorm()).isFalse();
        assertThat(qwen2.rope().theta()).isEqualTo(10_000);

        DecoderConfig mixtral = parse(TinyModels.write(TinyModels.Variant.MIXTRAL_SLIDING_WINDOW, dir.resolve("m")),
                x -> x.remove("rope_theta"));
        assertThat(mixtral.layer(0).slidingWindow()).isEqualTo(5);
        assertThat(mixtral.rope().theta()).isEqualTo(1e6); // MixtralConfig.default_theta
    }

    @Test
    void qwenSlidingWindowsNeedUseSlidingWindow(@TempDir Path dir) throws IOException {
        Path q3 = TinyModels.write(TinyModels.Variant.QWEN3_MOE, dir.resolve("q3"));
        assertThat(parse(q3, x -> x.addProperty("sliding_window", 7)).layer(0).slidingWindow()).isZero();
        DecoderConfig on = parse(q3, x -> {
            x.addProperty("sliding_window", 7);
            x.addProperty("use_sliding_window", true);
        });
        assertThat(on.layer(0).slidingWindow()).isEqualTo(7);
        assertThat(on.layer(1).slidingWindow()).isEqualTo(7);
        // Qwen2-MoE: odd-numbered layer indices + 1, below max_window_layers
        DecoderConfig qwen2 = parse(TinyModels.write(TinyModels.Variant.QWEN2_MOE, dir.resolve("q2")), x -> {
            x.addProperty("use_sliding_window", true);
            x.addProperty("sliding_window", 7);
            x.addProperty("max_window_layers", 28);
        });
        assertThat(qwen2.layer(0).slidingWindow()).isEqualTo(7);
        assertThat(qwen2.layer(1).slidingWindow()).isZero();
    }

    @Test
    void ropeScalingWinsOverRopeParametersAndItsThetaOverTheTopLevelOne(@TempDir Path dir) throws IOException {
        Path m = TinyModels.write(TinyModels.Variant.MIXTRAL, dir);
        DecoderConfig c = parse(m, x -> {
            x.add("rope_parameters", JsonParser.parseString("{\"rope_type\":\"default\",\"rope_theta\":5.0}"));
            x.add("rope_scaling", JsonParser.parseString("{\"type\":\"linear\",\"factor\":2.0,\"rope_theta\":7.0}"));
        });
        assertThat(c.rope()).isEqualTo(new DecoderConfig.Rope("linear", 7.0, 2.0, 1, 1, 0, false));
        DecoderConfig parameters = parse(m, x -> x.add("rope_parameters",
                JsonParser.parseString("{\"rope_type\":\"default\",\"rope_theta\":123.0}")));
        assertThat(parameters.rope().theta()).isEqualTo(123.0);
    }

    @Test
    void unsupportedSettingsAreRefusedWithTheirNames(@TempDir Path dir) throws IOException {
        Path m = TinyModels.write(TinyModels.Variant.MIXTRAL, dir);
        assertThatThrownBy(() -> parse(m, x -> x.add("rope_scaling",
                JsonParser.parseString("{\"rope_type\":\"yarn\",\"factor\":4.0}"))))
                .hasMessageContaining("rope type yarn is not supported");
        assertThatThrownBy(() -> parse(m, x -> x.addProperty("partial_rotary_factor", 0.5)))
                .hasMessageContaining("partial_rotary_factor");
        assertThatThrownBy(() -> parse(m, x -> x.addProperty("num_key_value_heads", 3)))
                .hasMessageContaining("not a multiple");
        Path l = TinyModels.write(TinyModels.Variant.LLAMA4, dir.resolve("l"));
        assertThatThrownBy(() -> parse(l, x -> x.add("attention_chunk_size", null)))
                .hasMessageContaining("attention_chunk_size");
    }

    private static DecoderConfig parse(Path dir, Consumer<JsonObject> edit) throws IOException {
        JsonObject json = TinyModels.readConfig(dir);
        edit.accept(json);
        return DecoderConfig.from(ModelConfig.parse(json, "test"));
    }
}
