package dev.moecluster.core.runner;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.moecluster.core.model.Checkpoint;
import dev.moecluster.core.model.ModelConfig;
import dev.moecluster.core.moe.ReferenceMoeBlock;
import dev.moecluster.core.tensor.DType;
import dev.moecluster.core.tensor.FloatMatrix;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/** Layer wiring, loading variants, greedy decoding and rejection of bad input. */
class DecoderModelTest {

    @ParameterizedTest
    @CsvSource({
        "MIXTRAL, '0,1'",
        "QWEN3_MOE_DENSE_LAYER, '0,2'",
        "QWEN2_MOE_DENSE_LAYER, '1'",
        "LLAMA4, '1'",
        "LLAMA4_NOPE_LAYERS, '1,3'"
    })
    void callsMoeLayersOnlyOnSparseLayersWithEveryRowOfTheStep(TinyModels.Variant variant, String moeLayers,
            @TempDir Path dir) throws IOException {
        Path modelDir = TinyModels.write(variant, dir);
        ModelConfig config = ModelConfig.load(modelDir);
        try (Checkpoint checkpoint = Checkpoint.open(modelDir); ReferenceMoeBlock block = ReferenceMoeBlock.open(modelDir)) {
            MoeLayers reference = new ReferenceMoeLayers(block);
            List<int[]> calls = new ArrayList<>();
            DecoderModel model = DecoderModel.load(config, checkpoint, (layer, x) -> {
                calls.add(new int[] {layer, x.rows(), x.cols()});
                return reference.forward(layer, x);
            });
            int[] expected = Arrays.stream(moeLayers.split(",")).mapToInt(Integer::parseInt).toArray();
            for (int l = 0; l < config.numLayers(); l++) {
                int layer = l;
                assertThat(model.isMoeLayer(l)).isEqualTo(Arrays.stream(expected).anyMatch(e -> e == layer));
            }

            KvCache a = model.newCache(16);
            KvCache b = model.newCache(16);
            model.forward(List.of(new SequenceChunk(a, new int[] {5, 6, 7}), new SequenceChunk(b, new int[] {8})));

            assertThat(calls).extracting(c -> c[0]).containsExactly(Arrays.stream(expected).boxed().toArray(Integer[]::new));
            assertThat(calls).allSatisfy(c -> {
                assertThat(c[1]).isEqualTo(4); // one MoE call per layer carries all sequences' rows
                assertThat(c[2]).isEqualTo(64);
            });
        }
    }

    @Test
    void greedyDecodingIsDeterministicAndFollowsTheArgMax(@TempDir Path dir) throws IOException {
        try (DecoderModel model = DecoderModel.open(TinyModels.write(TinyModels.Variant.QWEN3_MOE, dir))) {
            int[] prompt = {10, 20, 30, 40, 50};
            int[] first = model.generateGreedy(prompt, 6);
            assertThat(model.generateGreedy(prompt, 6)).containsExactly(first);

            KvCache cache = model.newCache(11);
            float[] logits = model.forward(prompt, cache);
            for (int i = 0; i < 6; i++) {
                int next = DecoderModel.argmax(logits);
                assertThat(next).isEqualTo(first[i]);
                logits = model.forward(new int[] {next}, cache);
            }
        }
    }

    @Test
    void argmaxTakesTheFirstOfEqualMaximaAndSkipsNaN() {
        assertThat(DecoderModel.argmax(new float[] {1, 3, 3, 2})).isEqualTo(1);
        assertThat(DecoderModel.argmax(new float[] {Float.NaN, -1, 0.5f})).isEqualTo(2);
    }

    @Test
    void multimodalLayoutGivesTheSameLogitsAsTextOnly(@TempDir Path dir) throws IOException {
        Path text = TinyModels.write(TinyModels.Variant.LLAMA4, dir.resolve("text"));
        Path multimodal = TinyModels.llama4Multimodal(text, dir.resolve("multimodal"));
        try (DecoderModel a = DecoderModel.open(text); DecoderModel b = DecoderModel.open(multimodal)) {
            int[] prompt = TinyModels.prompt(a.vocabSize());
            assertThat(b.forward(prompt, b.newCache(24))).containsExactly(a.forward(prompt, a.newCache(24)));
        }
    }

    @Test
    void lmHeadSitsBesideTheDecoderPrefix() {
        assertThat(DecoderModel.lmHeadName("model.")).isEqualTo("lm_head.weight");
        assertThat(DecoderModel.lmHeadName("language_model.model.")).isEqualTo("language_model.lm_head.weight");
    }

    @Test
    void tiedEmbeddingsProjectWithTheEmbeddingMatrix(@TempDir Path dir) throws IOException {
        Path tied = TinyModels.write(TinyModels.Variant.MIXTRAL_TIED_EMBEDDINGS, dir.resolve("tied"));
        Path untied = TinyModels.untiedCopy(tied, dir.resolve("untied"));
        try (DecoderModel a = DecoderModel.open(tied); DecoderModel b = DecoderModel.open(untied);
                Checkpoint checkpoint = Checkpoint.open(tied)) {
            assertThat(checkpoint.contains("lm_head.weight")).isFalse();
            assertThat(a.decoderConfig().tieWordEmbeddings()).isTrue();
            int[] prompt = TinyModels.prompt(a.vocabSize());
            assertThat(a.forward(prompt, a.newCache(24))).containsExactly(b.forward(prompt, b.newCache(24)));
        }
    }

    @Test
    void missingLmHeadWithoutTiedEmbeddingsIsAClearError(@TempDir Path dir) throws IOException {
        Path tied = TinyModels.write(TinyModels.Variant.MIXTRAL_TIED_EMBEDDINGS, dir);
        TinyModels.editConfig(tied, c -> c.addProperty("tie_word_embeddings", false));
        assertThatThrownBy(() -> DecoderModel.open(tied))
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("lm_head.weight")
                .hasMessageContaining("tie_word_embeddings");
    }

    @Test
    void configThatDisagreesWithTheTensorsIsAClearError(@TempDir Path dir) throws IOException {
        Path modelDir = TinyModels.write(TinyModels.Variant.QWEN3_MOE, dir);
        TinyModels.editConfig(modelDir, c -> c.addProperty("num_key_value_heads", 1));
        assertThatThrownBy(() -> DecoderModel.open(modelDir))
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("k_proj")
                .hasMessageContaining("config.json");
    }

    @Test
    void rejectsBadStepsWithoutTouchingAnyCache(@TempDir Path dir) throws IOException {
        try (DecoderModel model = DecoderModel.open(TinyModels.write(TinyModels.Variant.MIXTRAL, dir));
                DecoderModel other = DecoderModel.open(dir)) {
            KvCache cache = model.newCache(4);
            model.forward(new int[] {1, 2}, cache);
            KvCache fresh = model.newCache(4);

            assertThatThrownBy(() -> model.forward(new int[] {}, cache))
                    .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("at least one token");
            assertThatThrownBy(() -> model.forward(new int[] {model.vocabSize()}, cache))
                    .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("outside the vocabulary");
            assertThatThrownBy(() -> model.forward(new int[] {-1}, cache))
                    .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("outside the vocabulary");
            assertThatThrownBy(() -> model.forward(new int[] {1, 2, 3}, cache))
                    .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("holds 2 of 4");
            assertThatThrownBy(() -> other.forward(new int[] {1}, cache))
                    .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("different model");
            assertThatThrownBy(() -> model.forward(List.of(new SequenceChunk(fresh, new int[] {1}),
                    new SequenceChunk(fresh, new int[] {2})))).hasMessageContaining("twice");
            // a bad chunk anywhere in the batch stops the step before any cache moves
            assertThatThrownBy(() -> model.forward(List.of(new SequenceChunk(fresh, new int[] {1}),
                    new SequenceChunk(cache, new int[] {1, 2, 3})))).hasMessageContaining("do not fit");
            assertThatThrownBy(() -> model.forward(List.of())).hasMessageContaining("at least one sequence");
            assertThatThrownBy(() -> model.newCache(0)).hasMessageContaining("positive");
            assertThatThrownBy(() -> model.generateGreedy(new int[] {1}, 0)).hasMessageContaining("positive");

            assertThat(cache.length()).isEqualTo(2);
            assertThat(fresh.length()).isZero();
            assertThat(model.forward(new int[] {3, 4}, cache)).hasSize(model.vocabSize());
            assertThat(cache.remaining()).isZero();
        }
    }

    @Test
    void cacheDrawsBlocksOnDemandAndClearsForReuse(@TempDir Path dir) throws IOException {
        try (DecoderModel model = DecoderModel.open(TinyModels.write(TinyModels.Variant.LLAMA4, dir))) {
            KvCache cache = model.newCache(1000);
            assertThat(cache.allocatedBytes()).isZero();
            float[] first = model.forward(new int[] {7, 8, 9}, cache);
            long kvDim = model.decoderConfig().kvDim();
            // three tokens take one block of 16 positions
            assertThat(cache.blockTable()).hasSize(1);
            assertThat(cache.allocatedBytes()).isEqualTo(16 * kvDim * 2 * 4 * model.decoderConfig().numLayers());
            assertThat(model.kvBytesPerToken(DType.F32)).isEqualTo(kvDim * 2 * 4 * model.decoderConfig().numLayers());
            assertThat(model.kvBytesPerToken(DType.BF16)).isEqualTo(kvDim * 2 * 2 * model.decoderConfig().numLayers());

            cache.clear();
            assertThat(cache.length()).isZero();
            assertThat(model.forward(new int[] {7, 8, 9}, cache)).containsExactly(first);
        }
    }

    @Test
    void openFailsClearlyOnADirectoryWithoutAModel(@TempDir Path dir) throws IOException {
        Files.createDirectories(dir.resolve("empty"));
        assertThatThrownBy(() -> DecoderModel.open(dir.resolve("empty"))).isInstanceOf(IOException.class)
                .hasMessageContaining("config.json");
    }

    @Test
    void moeLayersThatReturnTheWrongShapeAreReported(@TempDir Path dir) throws IOException {
        Path modelDir = TinyModels.write(TinyModels.Variant.MIXTRAL, dir);
        try (Checkpoint checkpoint = Checkpoint.open(modelDir)) {
            DecoderModel model = DecoderModel.load(ModelConfig.load(modelDir), checkpoint,
                    (layer, x) -> FloatMatrix.zeros(x.rows() + 1, x.cols()));
            KvCache cache = model.newCache(8);
            assertThatThrownBy(() -> model.forward(new int[] {1, 2}, cache))
                    .isInstanceOf(IllegalStateException.class).hasMessageContaining("MoE layer 0 returned 3x64 for 2x64");
            assertThat(cache.length()).isZero();
        }
    }
}
