package dev.moecluster.core.runner;

import static org.assertj.core.api.Assertions.assertThat;

import com.google.gson.JsonArray;
import dev.moecluster.core.model.Architecture;
import dev.moecluster.core.model.ModelGenerator;
import dev.moecluster.core.tensor.FloatMatrix;
import java.io.IOException;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Llama 4's attention: chunked local attention, NoPE layers with temperature tuning, L2 q/k norm. */
class Llama4AttentionTest {
    /** Rows that should not change may still differ in the last bits: expert batches regroup. */
    private static final float UNCHANGED = 1e-5f;
    private static final float CHANGED = 1e-3f;

    @Test
    void tokensPastAChunkBoundaryDoNotSeeEarlierChunks(@TempDir Path dir) throws IOException {
        // Tiny Llama 4: two RoPE layers, both chunked with attention_chunk_size 16, so nothing of
        // positions 0-15 reaches positions 16+ through any layer.
        try (DecoderModel model = DecoderModel.open(TinyModels.write(TinyModels.Variant.LLAMA4, dir))) {
            assertThat(model.decoderConfig().layer(0).chunkSize()).isEqualTo(16);
            assertThat(model.decoderConfig().layer(1).chunkSize()).isEqualTo(16);
            int[] prompt = TinyModels.prompt(model.vocabSize());
            int[] changed = prompt.clone();
            changed[3] = (changed[3] + 1) % model.vocabSize();
            FloatMatrix before = model.forwardAllLogits(prompt, model.newCache(24));
            FloatMatrix after = model.forwardAllLogits(changed, model.newCache(24));

            for (int position = 16; position < 24; position++) {
                assertThat(maxDifference(before, after, position)).as("position %d", position).isLessThan(UNCHANGED);
            }
            for (int position = 3; position < 16; position++) {
                assertThat(maxDifference(before, after, position)).as("position %d", position).isGreaterThan(CHANGED);
            }
        }
    }

    @Test
    void withoutChunkingTheSameChangeReachesPastTheBoundary(@TempDir Path dir) throws IOException {
        Path modelDir = TinyModels.write(TinyModels.Variant.LLAMA4, dir);
        TinyModels.editConfig(modelDir, c -> c.addProperty("attention_chunk_size", 8192));
        try (DecoderModel model = DecoderModel.open(modelDir)) {
            int[] prompt = TinyModels.prompt(model.vocabSize());
            int[] changed = prompt.clone();
            changed[3] = (changed[3] + 1) % model.vocabSize();
            FloatMatrix before = model.forwardAllLogits(prompt, model.newCache(24));
            FloatMatrix after = model.forwardAllLogits(changed, model.newCache(24));
            assertThat(maxDifference(before, after, 20)).isGreaterThan(CHANGED);
        }
    }

    @Test
    void decodingPastTheBoundaryForgetsEarlierChunksToo(@TempDir Path dir) throws IOException {
        try (DecoderModel model = DecoderModel.open(TinyModels.write(TinyModels.Variant.LLAMA4, dir))) {
            int[] prompt = TinyModels.prompt(model.vocabSize());
            int[] changed = prompt.clone();
            changed[0] = (changed[0] + 5) % model.vocabSize();
            FloatMatrix a = KvCacheConsistencyTest.allLogitsInChunks(model, prompt, 16, 1, 1, 1, 1, 1, 1, 1, 1);
            FloatMatrix b = KvCacheConsistencyTest.allLogitsInChunks(model, changed, 16, 1, 1, 1, 1, 1, 1, 1, 1);
            assertThat(maxDifference(a, b, 20)).isLessThan(UNCHANGED);
            assertThat(maxDifference(a, b, 15)).isGreaterThan(CHANGED);
        }
    }

    @Test
    void noPeLayerIgnoresTheOrderOfEarlierTokens(@TempDir Path dir) throws IOException {
        // One NoPE layer with temperature tuning off: attention over keys without positions is a
        // set function, so reordering the prefix leaves the last token's logits unchanged.
        Path nope = oneLayer(dir.resolve("nope"), false, false);
        Path rope = oneLayer(dir.resolve("rope"), true, false);
        try (DecoderModel noPe = DecoderModel.open(nope); DecoderModel withRope = DecoderModel.open(rope)) {
            assertThat(noPe.decoderConfig().layer(0).rope()).isFalse();
            assertThat(noPe.decoderConfig().layer(0).chunkSize()).isZero(); // NoPE layers attend fully
            int[] prompt = TinyModels.prompt(noPe.vocabSize());
            int[] shuffled = reversedPrefix(prompt);
            assertThat(maxDifference(noPe.forward(prompt, noPe.newCache(24)), noPe.forward(shuffled, noPe.newCache(24))))
                    .isLessThan(UNCHANGED);
            assertThat(maxDifference(withRope.forward(prompt, withRope.newCache(24)),
                    withRope.forward(shuffled, withRope.newCache(24)))).isGreaterThan(CHANGED);
        }
    }

    @Test
    void temperatureTuningDependsOnlyOnTheQueryPosition(@TempDir Path dir) throws IOException {
        Path plain = oneLayer(dir.resolve("plain"), false, false);
        Path tuned = oneLayer(dir.resolve("tuned"), false, true); // floor_scale 2, attn_scale 0.5
        try (DecoderModel off = DecoderModel.open(plain); DecoderModel on = DecoderModel.open(tuned)) {
            int[] prompt = TinyModels.prompt(on.vocabSize());
            FloatMatrix withoutTuning = off.forwardAllLogits(prompt, off.newCache(24));
            FloatMatrix withTuning = on.forwardAllLogits(prompt, on.newCache(24));
            // scale = log1p(floor((pos + 1) / 2)) * 0.5 + 1: exactly 1 at position 0 only
            assertThat(maxDifference(withTuning, withoutTuning, 0)).isLessThan(UNCHANGED);
            assertThat(maxDifference(withTuning, withoutTuning, 23)).isGreaterThan(CHANGED);
            // still blind to the order of the keys
            assertThat(maxDifference(on.forward(prompt, on.newCache(24)),
                    on.forward(reversedPrefix(prompt), on.newCache(24)))).isLessThan(UNCHANGED);
        }
    }

    @Test
    void ropeLayersCacheL2NormalisedKeysAndNoPeLayersRawOnes(@TempDir Path dir) throws IOException {
        try (DecoderModel model = DecoderModel.open(TinyModels.write(TinyModels.Variant.LLAMA4_NOPE_LAYERS, dir))) {
            DecoderConfig c = model.decoderConfig();
            KvCache cache = model.newCache(24);
            model.forward(TinyModels.prompt(model.vocabSize()), cache);
            for (int layer = 0; layer < 3; layer++) {
                assertThat(c.layer(layer).qkL2Norm()).isTrue();
                for (double meanSquare : headMeanSquares(cache, layer, c)) {
                    assertThat(meanSquare).isCloseTo(1.0, org.assertj.core.data.Offset.offset(1e-4));
                }
            }
            assertThat(c.layer(3).qkL2Norm()).isFalse();
            assertThat(largestDistanceFromOne(headMeanSquares(cache, 3, c))).isGreaterThan(0.05);
        }
    }

    @Test
    void useQkNormFalseLeavesRopeLayerKeysUnnormalised(@TempDir Path dir) throws IOException {
        Path modelDir = TinyModels.write(TinyModels.Variant.LLAMA4, dir);
        TinyModels.editConfig(modelDir, c -> c.addProperty("use_qk_norm", false));
        try (DecoderModel model = DecoderModel.open(modelDir)) {
            KvCache cache = model.newCache(24);
            model.forward(TinyModels.prompt(model.vocabSize()), cache);
            assertThat(largestDistanceFromOne(headMeanSquares(cache, 0, model.decoderConfig()))).isGreaterThan(0.05);
        }
    }

    /** A one-layer Llama 4 whose only layer is NoPE (or RoPE), with temperature tuning off or strong. */
    private static Path oneLayer(Path dir, boolean rope, boolean temperatureTuning) throws IOException {
        TinyModels.generate(ModelGenerator.Spec.tiny(Architecture.LLAMA4).withSize(1, 64, 128, 8), dir);
        TinyModels.editConfig(dir, c -> {
            JsonArray flags = new JsonArray();
            flags.add(rope ? 1 : 0);
            c.add("no_rope_layers", flags);
            c.addProperty("attn_temperature_tuning", temperatureTuning);
            c.addProperty("floor_scale", 2);
            c.addProperty("attn_scale", 0.5);
            c.addProperty("attention_chunk_size", 8192);
        });
        return dir;
    }

    /** The prompt with all tokens but the last in reverse order. */
    private static int[] reversedPrefix(int[] prompt) {
        int[] out = prompt.clone();
        for (int i = 0; i < prompt.length - 1; i++) {
            out[i] = prompt[prompt.length - 2 - i];
        }
        return out;
    }

    private static double[] headMeanSquares(KvCache cache, int layer, DecoderConfig c) {
        int d = c.headDim();
        int heads = c.numKvHeads();
        double[] out = new double[cache.length() * heads];
        for (int h = 0; h < out.length; h++) {
            float[] keys = cache.key(layer, h / heads);
            int at = (h % heads) * d;
            double s = 0;
            for (int i = 0; i < d; i++) {
                s += (double) keys[at + i] * keys[at + i];
            }
            out[h] = s / d;
        }
        return out;
    }

    private static double largestDistanceFromOne(double[] values) {
        return java.util.Arrays.stream(values).map(m -> Math.abs(m - 1)).max().orElseThrow();
    }

    private static float maxDifference(FloatMatrix a, FloatMatrix b, int row) {
        float max = 0;
        for (int c = 0; c < a.cols(); c++) {
            max = Math.max(max, Math.abs(a.get(row, c) - b.get(row, c)));
        }
        return max;
    }

    private static float maxDifference(float[] a, float[] b) {
        return maxDifference(new FloatMatrix(1, a.length, a), new FloatMatrix(1, b.length, b), 0);
    }
}
