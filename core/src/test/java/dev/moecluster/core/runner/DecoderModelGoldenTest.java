package dev.moecluster.core.runner;

import static org.assertj.core.api.Assertions.assertThat;

import com.google.gson.JsonArray;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import dev.moecluster.core.tensor.DType;
import dev.moecluster.core.tensor.FloatMatrix;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * The reference decoder against logits that transformers 5.18.0 computed for the same tiny models
 * (float32, eager attention; {@code core/src/test/python/transformers_golden.py}), and against its
 * greedy {@code generate}. For the bf16 checkpoint the script rounds Qwen's routing weights to bf16,
 * the one cast to the checkpoint dtype that the reference MoE block applies while computing in f32.
 */
class DecoderModelGoldenTest {
    /** transformers and this decoder agree to about 2e-6 on f32 models' logits (magnitude up to ~5). */
    private static final float TOLERANCE = 1e-4f;
    /**
     * bf16 keys and values (8 significant bits) move these logits by up to 0.31 % of the row's largest
     * logit (measured over all variants); 1 % leaves room without hiding a wrong block or position.
     */
    private static final float BF16_RELATIVE_TOLERANCE = 1e-2f;

    private static JsonObject golden;
    private static JsonArray positions;

    @BeforeAll
    static void readGolden() throws IOException {
        try (InputStream in = DecoderModelGoldenTest.class.getResourceAsStream("transformers-golden.json")) {
            golden = JsonParser.parseReader(new InputStreamReader(in, StandardCharsets.UTF_8)).getAsJsonObject();
        }
        positions = golden.getAsJsonArray("positions");
    }

    @ParameterizedTest
    @EnumSource(TinyModels.Variant.class)
    void logitsMatchTransformers(TinyModels.Variant variant, @TempDir Path dir) throws IOException {
        try (DecoderModel model = DecoderModel.open(TinyModels.write(variant, dir))) {
            assertMatchesGolden(model, golden.getAsJsonObject("models").getAsJsonObject(variant.dirName()),
                    TOLERANCE);
        }
    }

    @ParameterizedTest
    @EnumSource(TinyModels.Variant.class)
    void greedyGenerationMatchesTransformersGenerate(TinyModels.Variant variant, @TempDir Path dir) throws IOException {
        JsonObject expected = golden.getAsJsonObject("models").getAsJsonObject(variant.dirName());
        try (DecoderModel model = DecoderModel.open(TinyModels.write(variant, dir))) {
            int[] prompt = ints(expected.getAsJsonArray("prompt"));
            assertThat(model.generateGreedy(prompt, 8)).containsExactly(ints(expected.getAsJsonArray("greedy")));
        }
    }

    /**
     * The router keeps keys and values in bf16 (the checkpoint dtype; vLLM's and transformers' cache
     * dtype for a bf16 model): logits move by bf16 rounding of k and v, greedy tokens stay those of
     * transformers' f32 run.
     */
    @ParameterizedTest
    @EnumSource(TinyModels.Variant.class)
    void bf16KvCacheStaysWithinBf16ToleranceAndKeepsGreedyTokens(TinyModels.Variant variant, @TempDir Path dir)
            throws IOException {
        JsonObject expected = golden.getAsJsonObject("models").getAsJsonObject(variant.dirName());
        try (DecoderModel model = DecoderModel.open(TinyModels.write(variant, dir))) {
            int[] prompt = ints(expected.getAsJsonArray("prompt"));
            FloatMatrix logits = model.forwardAllLogits(prompt, model.newCache(prompt.length, DType.BF16));
            assertMatchesGolden(logits, expected, TOLERANCE, BF16_RELATIVE_TOLERANCE);
            assertThat(model.generateGreedy(prompt, 8, DType.BF16)).containsExactly(ints(expected.getAsJsonArray("greedy")));
        }
    }

    @Test
    void multimodalLlama4CheckpointUnderLanguageModelPrefixMatchesTransformers(@TempDir Path dir) throws IOException {
        Path text = TinyModels.write(TinyModels.Variant.LLAMA4_NOPE_LAYERS, dir.resolve("text"));
        Path multimodal = TinyModels.llama4Multimodal(text, dir.resolve("multimodal"));
        try (DecoderModel model = DecoderModel.open(multimodal)) {
            assertThat(model.config().weightPrefix()).isEqualTo("language_model.model.");
            assertMatchesGolden(model, golden.getAsJsonObject("models").getAsJsonObject("llama4-nope-layers"), TOLERANCE);
        }
    }

    private static void assertMatchesGolden(DecoderModel model, JsonObject expected, float tolerance) {
        int[] prompt = ints(expected.getAsJsonArray("prompt"));
        assertMatchesGolden(model.forwardAllLogits(prompt, model.newCache(prompt.length)), expected, tolerance, 0);
    }

    /** Every golden logit within {@code absolute + relative * (largest |logit| of its row)}. */
    private static void assertMatchesGolden(FloatMatrix logits, JsonObject expected, float absolute, float relative) {
        JsonArray rows = expected.getAsJsonArray("logits");
        for (int i = 0; i < positions.size(); i++) {
            int position = positions.get(i).getAsInt();
            JsonArray row = rows.get(i).getAsJsonArray();
            assertThat(row.size()).isEqualTo(logits.cols());
            float scale = 0;
            for (int v = 0; v < logits.cols(); v++) {
                scale = Math.max(scale, Math.abs(row.get(v).getAsFloat()));
            }
            float tolerance = absolute + relative * scale;
            for (int v = 0; v < logits.cols(); v++) {
                float want = row.get(v).getAsFloat();
                float got = logits.get(position, v);
                if (Math.abs(got - want) > tolerance) {
                    throw new AssertionError("position " + position + " token " + v + ": transformers " + want
                            + ", decoder " + got + " (tolerance " + tolerance + ")");
                }
            }
        }
    }
    static int[] ints(JsonArray a) {
        int[] out = new int[a.size()];
        for (int i = 0; i < out.length; i++) {
            out[i] = a.get(i).getAsInt();
        }
        return out;
    }
}
