package dev.moecluster.core.runner;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.moecluster.core.model.Architecture;
import dev.moecluster.core.model.Checkpoint;
import dev.moecluster.core.model.ModelConfig;
import dev.moecluster.core.model.ModelGenerator;
import dev.moecluster.core.moe.ReferenceMoeBlock;
import dev.moecluster.core.tensor.DType;
import dev.moecluster.core.tensor.FloatMatrix;
import java.io.IOException;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * The KV cache makes incremental processing equal to processing at once: a prompt prefilled whole,
 * in uneven chunks, or token by token gives the same logits at every position, and sequences
 * batched into one step give what they give alone.
 */
class KvCacheConsistencyTest {
    private static final float TOLERANCE = 1e-4f;

    @ParameterizedTest
    @EnumSource(value = TinyModels.Variant.class,
            names = {"MIXTRAL", "MIXTRAL_SLIDING_WINDOW", "QWEN3_MOE", "QWEN3_MOE_DENSE_LAYER", "QWEN2_MOE", "LLAMA4",
                    "LLAMA4_NOPE_LAYERS"})
    void prefillWholeInChunksAndTokenByTokenAgree(TinyModels.Variant variant, @TempDir Path dir) throws IOException {
        try (DecoderModel model = DecoderModel.open(TinyModels.write(variant, dir))) {
            int[] prompt = TinyModels.prompt(model.vocabSize());
            FloatMatrix whole = model.forwardAllLogits(prompt, model.newCache(prompt.length));

            FloatMatrix chunked = allLogitsInChunks(model, prompt, 5, 7, 12);
            int[] ones = new int[prompt.length];
            Arrays.fill(ones, 1);
            FloatMatrix tokenByToken = allLogitsInChunks(model, prompt, ones);

            assertClose(chunked, whole);
            assertClose(tokenByToken, whole);
        }
    }

    @Test
    void shardedBf16CheckpointDecodesLikeItPrefills(@TempDir Path dir) throws IOException {
        var spec = ModelGenerator.Spec.tiny(Architecture.LLAMA4).withSize(4, 64, 128, 8).withDtype(DType.BF16).withShards(3);
        ModelGenerator.generate(spec, dir);
        try (DecoderModel model = DecoderModel.open(dir)) {
            int[] prompt = TinyModels.prompt(model.vocabSize());
            int[] ones = new int[prompt.length];
            Arrays.fill(ones, 1);
            assertClose(allLogitsInChunks(model, prompt, ones),
                    model.forwardAllLogits(prompt, model.newCache(prompt.length)));
        }
    }

    @Test
    void lastTokenLogitsEqualTheLastRowOfAllLogits(@TempDir Path dir) throws IOException {
        try (DecoderModel model = DecoderModel.open(TinyModels.write(TinyModels.Variant.QWEN2_MOE, dir))) {
            int[] prompt = TinyModels.prompt(model.vocabSize());
            FloatMatrix all = model.forwardAllLogits(prompt, model.newCache(prompt.length));
            float[] last = model.forward(prompt, model.newCache(prompt.length));
            assertThat(last).hasSize(model.vocabSize());
            for (int v = 0; v < last.length; v++) {
                assertThat(last[v]).isCloseTo(all.get(prompt.length - 1, v), org.assertj.core.data.Offset.offset(TOLERANCE));
            }
        }
    }

    @ParameterizedTest
    @EnumSource(value = TinyModels.Variant.class, names = {"MIXTRAL", "QWEN2_MOE", "LLAMA4_NOPE_LAYERS"})
    void batchedStepGivesEachSequenceWhatItGetsAlone(TinyModels.Variant variant, @TempDir Path dir) throws IOException {
        try (DecoderModel model = DecoderModel.open(TinyModels.write(variant, dir))) {
            int v = model.vocabSize();
            int[] a = TinyModels.prompt(v);
            int[] b = {3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7, 9, 3, 2, 3};
            int[] c = {42, 7};

            // Alone: a prefilled then decoding one token; b prefilled; c prefilled.
            KvCache aloneA = model.newCache(64);
            model.forward(Arrays.copyOf(a, 20), aloneA);
            float[] expectA = model.forward(Arrays.copyOfRange(a, 20, 21), aloneA);
            float[] expectB = model.forward(b, model.newCache(64));
            KvCache aloneC = model.newCache(64);
            model.forward(c, aloneC);
            float[] expectC = model.forward(new int[] {11}, aloneC);

            // Together: one step mixing a decode of a, a whole prefill of b and a decode of c.
            KvCache batchA = model.newCache(64);
            model.forward(Arrays.copyOf(a, 20), batchA);
            KvCache batchB = model.newCache(64);
            KvCache batchC = model.newCache(64);
            model.forward(c, batchC);
            FloatMatrix step = model.forward(List.of(new SequenceChunk(batchA, new int[] {a[20]}),
                    new SequenceChunk(batchB, b), new SequenceChunk(batchC, new int[] {11})));

            assertThat(step.rows()).isEqualTo(3);
            assertRowClose(step, 0, expectA);
            assertRowClose(step, 1, expectB);
            assertRowClose(step, 2, expectC);
            assertThat(batchA.length()).isEqualTo(21);
            assertThat(batchB.length()).isEqualTo(b.length);
            assertThat(batchC.length()).isEqualTo(3);
        }
    }

    @Test
    void failedStepLeavesTheCacheAsItWas(@TempDir Path dir) throws IOException {
        Path modelDir = TinyModels.write(TinyModels.Variant.MIXTRAL, dir);
        ModelConfig config = ModelConfig.load(modelDir);
        try (Checkpoint checkpoint = Checkpoint.open(modelDir); ReferenceMoeBlock block = ReferenceMoeBlock.open(modelDir)) {
            MoeLayers reference = new ReferenceMoeLayers(block);
            boolean[] fail = {false};
            DecoderModel model = DecoderModel.load(config, checkpoint, (layer, x) -> {
                if (fail[0] && layer == 1) {
                    throw new IllegalStateException("expert worker lost");
                }
                return reference.forward(layer, x);
            });
            int[] prompt = TinyModels.prompt(model.vocabSize());
            KvCache cache = model.newCache(64);
            model.forward(Arrays.copyOf(prompt, 10), cache);

            fail[0] = true;
            assertThatThrownBy(() -> model.forward(Arrays.copyOfRange(prompt, 10, 16), cache))
                    .hasMessage("expert worker lost");
            assertThat(cache.length()).isEqualTo(10);

            fail[0] = false;
            float[] retried = model.forward(Arrays.copyOfRange(prompt, 10, 16), cache);
            float[] fresh = model.forward(Arrays.copyOf(prompt, 16), model.newCache(64));
            assertRowClose(new FloatMatrix(1, fresh.length, retried), 0, fresh);
        }
    }

    /** Processes {@code prompt} in consecutive chunks of the given sizes and stacks the logits of every token. */
    static FloatMatrix allLogitsInChunks(DecoderModel model, int[] prompt, int... sizes) {
        KvCache cache = model.newCache(prompt.length);
        int vocab = model.vocabSize();
        float[] out = new float[prompt.length * vocab];
        int at = 0;
        for (int size : sizes) {
            FloatMatrix part = model.forwardAllLogits(Arrays.copyOfRange(prompt, at, at + size), cache);
            System.arraycopy(part.data(), 0, out, at * vocab, size * vocab);
            at += size;
        }
        assertThat(at).isEqualTo(prompt.length);
        assertThat(cache.length()).isEqualTo(prompt.length);
        return new FloatMatrix(prompt.length, vocab, out);
    }

    static void assertClose(FloatMatrix actual, FloatMatrix expected) {
        assertThat(actual.rows()).isEqualTo(expected.rows());
        assertThat(actual.cols()).isEqualTo(expected.cols());
        for (int r = 0; r < expected.rows(); r++) {
            for (int c = 0; c < expected.cols(); c++) {
                if (Math.abs(actual.get(r, c) - expected.get(r, c)) > TOLERANCE) {
                    throw new AssertionError("position " + r + " token " + c + ": expected " + expected.get(r, c)
                            + ", got " + actual.get(r, c));
                }
            }
        }
    }

    static void assertRowClose(FloatMatrix actual, int row, float[] expected) {
        assertThat(actual.cols()).isEqualTo(expected.length);
        for (int c = 0; c < expected.length; c++) {
            if (Math.abs(actual.get(row, c) - expected[c]) > TOLERANCE) {
                throw new AssertionError("row " + row + " token " + c + ": expected " + expected[c] + ", got "
                        + actual.get(row, c));
            }
        }
    }
}
