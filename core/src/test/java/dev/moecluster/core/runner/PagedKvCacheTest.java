package dev.moecluster.core.runner;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.moecluster.core.tensor.DType;
import java.io.IOException;
import java.nio.file.Path;
import java.util.Arrays;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/** The paged KV cache: blocks from one pool, admission by free blocks, and layout-independent results. */
class PagedKvCacheTest {
    @ParameterizedTest
    @EnumSource(value = DType.class, names = {"F32", "BF16"})
    void scatteredBlocksGiveTheSameLogitsAsContiguousOnes(DType dtype, @TempDir Path dir) throws IOException {
        try (DecoderModel model = DecoderModel.open(TinyModels.write(TinyModels.Variant.LLAMA4, dir))) {
            int[] prompt = TinyModels.prompt(model.vocabSize());
            int[] longer = new int[40];
            for (int i = 0; i < longer.length; i++) {
                longer[i] = prompt[i % prompt.length];
            }
            KvCache contiguous = model.newCache(64, dtype);
            float[] expected = decodeInPieces(model, longer, contiguous, null);
            assertThat(contiguous.blockTable()).containsExactly(0, 1, 2);

            // a second sequence grows in step, so the two take turns drawing blocks
            KvBlockPool pool = model.newBlockPool(dtype, KvBlockPool.DEFAULT_BLOCK_TOKENS, 8);
            KvCache scattered = pool.newCache(64);
            KvCache other = pool.newCache(64);
            float[] actual = decodeInPieces(model, longer, scattered, other);
            assertThat(scattered.blockTable()).containsExactly(0, 2, 4);
            assertThat(other.blockTable()).containsExactly(1, 3, 5);
            assertThat(actual).containsExactly(expected);
        }
    }

    /** Prefills 16-token pieces of {@code tokens} (the last one as decode steps), {@code other} taking a block after each. */
    private static float[] decodeInPieces(DecoderModel model, int[] tokens, KvCache cache, KvCache other) {
        float[] logits = null;
        int at = 0;
        while (at < tokens.length) {
            int n = Math.min(16, tokens.length - at);
            if (at + n == tokens.length) {
                n = 1;
            }
            logits = model.forward(Arrays.copyOfRange(tokens, at, at + n), cache);
            if (other != null && at % 16 == 0) {
                model.forward(new int[16], other);
            }
            at += n;
        }
        return logits;
    }

    @Test
    void admissionCountsFreeBlocksAndReleaseReturnsThemAtOnce(@TempDir Path dir) throws IOException {
        try (DecoderModel model = DecoderModel.open(TinyModels.write(TinyModels.Variant.MIXTRAL, dir))) {
            KvBlockPool pool = model.newBlockPool(DType.BF16, 16, 4);
            assertThat(pool.bytesPerBlock()).isEqualTo(16 * model.kvBytesPerToken(DType.BF16));
            KvCache a = pool.tryNewCache(33); // 3 blocks
            assertThat(a).isNotNull();
            assertThat(pool.unreservedBlocks()).isEqualTo(1);
            assertThat(pool.usedBlocks()).isZero(); // reserved, not drawn yet
            assertThat(pool.tryNewCache(17)).isNull();
            assertThatThrownBy(() -> pool.newCache(17)).hasMessageContaining("needs 2 KV blocks; 1 of 4 are free");

            model.forward(new int[] {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17}, a);
            assertThat(pool.usedBlocks()).isEqualTo(2);
            KvCache b = pool.tryNewCache(16);
            assertThat(b).isNotNull();

            a.release();
            a.release(); // a second release changes nothing
            assertThat(pool.usedBlocks()).isZero();
            assertThat(pool.unreservedBlocks()).isEqualTo(3);
            assertThat(pool.tryNewCache(48)).isNotNull();
            assertThatThrownBy(() -> model.forward(new int[] {1}, a)).hasMessageContaining("released");
        }
    }

    @Test
    void bf16KeysAndValuesAreRoundedToNearestEven() {
        KvCache cache = new KvBlockPool(null, DType.BF16, 1, 2, 4, 1).newCache(4);
        cache.reserve(1);
        // 1 + 2^-8 is halfway between bf16 1 and 1 + 2^-7 and rounds to even (1); 1 + 3 * 2^-8 rounds up
        cache.write(0, 0, new float[] {1 + 0x1p-8f, 1 + 3 * 0x1p-8f}, 0, new float[] {-2.5f, 0.75f}, 0);
        assertThat(cache.key(0, 0)).containsExactly(1f, 1 + 0x1p-6f);
        assertThat(cache.value(0, 0)).containsExactly(-2.5f, 0.75f);
    }
}
