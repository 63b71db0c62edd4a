package dev.moecluster.core.runner;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.within;

import dev.moecluster.core.model.Architecture;
import dev.moecluster.core.tensor.DType;
import dev.moecluster.core.tensor.Tensor;
import java.lang.foreign.Arena;
import java.util.List;
import org.junit.jupiter.api.Test;

/** Attention arithmetic on dimensions small enough to work out by hand. */
class SelfAttentionTest {
    private static final float EPS = 1e-5f;

    @Test
    void attendsWithSoftmaxOfScaledDotProducts() {
        // q = (1, 0); keys (1, 0), (0, 1), (2, 0) give scores 1, 0, 2;
        // softmax = e^1, e^0, e^2 over 11.107337 = 0.244728, 0.090031, 0.665241;
        // values (1, 2), (3, 4), (5, 6) give 0.244728 + 0.270093 + 3.326205 = 3.841026, and one more.
        float[] q = {1, 0};
        float[] keys = {1, 0, 0, 1, 2, 0};
        float[] values = {1, 2, 3, 4, 5, 6};
        float[] out = new float[2];
        SelfAttention.attend(q, 0, cacheOf(keys, values, 2), 0, 0, 2, 0, 2, 1f, out, 0);
        assertThat(out).containsExactly(new float[] {3.841026f, 4.841026f}, within(EPS));
    }

    @Test
    void scalingDividesScoresBeforeSoftmax() {
        // scaling 0.5 turns scores 1, 0, 2 into 0.5, 0, 1: e^0.5, e^0, e^1 over 5.367003 = 0.307196, 0.186324, 0.506480
        float[] out = new float[2];
        SelfAttention.attend(new float[] {1, 0}, 0, cacheOf(new float[] {1, 0, 0, 1, 2, 0}, new float[] {1, 2, 3, 4, 5, 6},
                2), 0, 0, 2, 0, 2, 0.5f, out, 0);
        assertThat(out[0]).isCloseTo(0.307196f * 1 + 0.186324f * 3 + 0.506480f * 5, within(EPS));
    }

    @Test
    void attendsOnlyToTheVisibleRange() {
        // from position 1: scores 0, 2 give weights 0.119203, 0.880797 over values (3, 4), (5, 6)
        float[] out = new float[2];
        SelfAttention.attend(new float[] {1, 0}, 0, cacheOf(new float[] {1, 0, 0, 1, 2, 0}, new float[] {1, 2, 3, 4, 5, 6},
                2), 0, 0, 2, 1, 2, 1f, out, 0);
        assertThat(out).containsExactly(new float[] {4.761594f, 5.761594f}, within(EPS));
    }

    @Test
    void queryHeadsShareKeyValueHeadsInContiguousGroups() {
        // 4 query heads, 2 kv heads, head_dim 2, hidden 8: q = k = 0 so attention is uniform; v takes
        // x[0..3] (kv head 0 = (x0, x1), kv head 1 = (x2, x3)); o is the identity. repeat_kv maps query
        // heads 0, 1 to kv head 0 and heads 2, 3 to kv head 1.
        try (Arena arena = Arena.ofConfined()) {
            var config = config(8, 4, 2, 2);
            float[] v = new float[4 * 8];
            for (int i = 0; i < 4; i++) {
                v[i * 8 + i] = 1;
            }
            SelfAttention attention = new SelfAttention(config, 0, rope(2), zeros(arena, 8, 8), zeros(arena, 4, 8),
                    tensor(arena, 4, 8, v), identity(arena, 8), null, null, null, null, null, null);
            KvCache cache = new KvBlockPool(null, DType.F32, 1, config.kvDim(), 2, 2).newCache(4);
            cache.reserve(2);
            float[] x = {1, 2, 3, 4, 9, 9, 9, 9, 5, 6, 7, 8, 9, 9, 9, 9};
            float[] out = attention.forward(x, new ForwardStep(List.of(new SequenceChunk(cache, new int[] {0, 0})),
                    rope(2)));
            // token 0 sees itself; token 1 averages both tokens' values: ((1+5)/2, (2+6)/2) = (3, 4), (5, 6)
            assertThat(out).containsExactly(new float[] {1, 2, 1, 2, 3, 4, 3, 4, 3, 4, 3, 4, 5, 6, 5, 6}, within(EPS));
            // keys and values land in the cache at their positions, kv head by kv head
            assertThat(cache.value(0, 0)).containsExactly(1, 2, 3, 4);
            assertThat(cache.value(0, 1)).containsExactly(5, 6, 7, 8);
        }
    }

    @Test
    void temperatureTuningScalesQueriesByLogOfPositionOverFloorScale() {
        // log1p(floor((pos + 1) / floor_scale)) * attn_scale + 1 with floor_scale 4, attn_scale 0.1
        var config = new DecoderConfig(Architecture.LLAMA4, 8, 1, 4, 2, 2, 1e-5f, false, false, false, false, 0, 4f,
                0.1f, DecoderConfig.Rope.plain(500_000, true),
                List.of(new DecoderConfig.LayerAttention(false, false, true, 0, 0)));
        try (Arena arena = Arena.ofConfined()) {
            SelfAttention attention = new SelfAttention(config, 0, rope(2), zeros(arena, 8, 8), zeros(arena, 4, 8),
                    zeros(arena, 4, 8), identity(arena, 8), null, null, null, null, null, null);
            assertThat(attention.temperatureScale(0)).isEqualTo(1f);
            assertThat(attention.temperatureScale(2)).isEqualTo(1f);
            assertThat(attention.temperatureScale(3)).isCloseTo(1.0693147f, within(EPS)); // 1 + 0.1 ln 2
            assertThat(attention.temperatureScale(23)).isCloseTo(1.1945910f, within(EPS)); // 1 + 0.1 ln 7
        }
    }

    @Test
    void visibleWindowFollowsChunksAndSlidingWindows() {
        var chunked = new DecoderConfig.LayerAttention(true, true, false, 16, 0);
        assertThat(chunked.firstVisible(15)).isZero();
        assertThat(chunked.firstVisible(16)).isEqualTo(16);
        assertThat(chunked.firstVisible(20)).isEqualTo(16);
        assertThat(chunked.firstVisible(33)).isEqualTo(32);
        var sliding = new DecoderConfig.LayerAttention(true, false, false, 0, 5);
        assertThat(sliding.firstVisible(3)).isZero();
        assertThat(sliding.firstVisible(4)).isZero();
        assertThat(sliding.firstVisible(5)).isEqualTo(1); // q - k < 5
        assertThat(DecoderConfig.LayerAttention.causal().firstVisible(1000)).isZero();
    }

    /** A one-layer f32 cache holding {@code keys} and {@code values} ({@code kvDim} per position), two positions per block. */
    static KvCache cacheOf(float[] keys, float[] values, int kvDim) {
        int tokens = keys.length / kvDim;
        KvCache cache = new KvBlockPool(null, DType.F32, 1, kvDim, 2, (tokens + 1) / 2).newCache(tokens);
        cache.reserve(tokens);
        for (int p = 0; p < tokens; p++) {
            cache.write(0, p, keys, p * kvDim, values, p * kvDim);
        }
        cache.advance(tokens);
        return cache;
    }

    private static DecoderConfig config(int hidden, int heads, int kvHeads, int headDim) {
        return new DecoderConfig(Architecture.MIXTRAL, hidden, 1, heads, kvHeads, headDim, 1e-5f, false, false, false,
                false, 0, 8192f, 0.1f, DecoderConfig.Rope.plain(10_000, false),
                List.of(new DecoderConfig.LayerAttention(false, false, false, 0, 0)));
    }

    private static RotaryEmbedding rope(int headDim) {
        return new RotaryEmbedding(DecoderConfig.Rope.plain(10_000, false), headDim);
    }

    private static Tensor tensor(Arena arena, int rows, int cols, float[] values) {
        return Tensor.of(arena, DType.F32, new long[] {rows, cols}, values);
    }

    private static Tensor zeros(Arena arena, int rows, int cols) {
        return tensor(arena, rows, cols, new float[rows * cols]);
    }

    private static Tensor identity(Arena arena, int n) {
        float[] v = new float[n * n];
        for (int i = 0; i < n; i++) {
            v[i * n + i] = 1;
        }
        return tensor(arena, n, n, v);
    }
}
