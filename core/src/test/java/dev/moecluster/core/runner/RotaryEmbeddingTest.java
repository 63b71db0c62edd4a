package dev.moecluster.core.runner;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.within;

import org.junit.jupiter.api.Test;

/** Inverse frequencies and rotations against values worked out by hand (and by transformers for llama3). */
class RotaryEmbeddingTest {
    private static final float EPS = 1e-6f;
    private static final float COS1 = 0.5403023f;
    private static final float SIN1 = 0.84147098f;
    private static final float COS001 = 0.99995f;
    private static final float SIN001 = 0.0099998333f;

    @Test
    void defaultInverseFrequenciesArePowersOfTheta() {
        // theta 10000, head_dim 8: 10000^(-2i/8) = 1, 0.1, 0.01, 0.001
        float[] inv = RotaryEmbedding.inverseFrequencies(DecoderConfig.Rope.plain(10_000, false), 8);
        assertThat(inv).containsExactly(new float[] {1f, 0.1f, 0.01f, 0.001f}, within(EPS));
    }

    @Test
    void linearScalingDividesEveryFrequencyByTheFactor() {
        var rope = new DecoderConfig.Rope("linear", 10_000, 4, 1, 1, 0, false);
        assertThat(RotaryEmbedding.inverseFrequencies(rope, 8))
                .containsExactly(new float[] {0.25f, 0.025f, 0.0025f, 0.00025f}, within(EPS));
    }

    @Test
    void llama3ScalingKeepsShortWavelengthsDividesLongOnesAndSmoothsBetween() {
        // theta 5e5, head_dim 16, factor 8, low 1, high 4, original 8192. Wavelengths 2π/inv:
        // pairs 0-3 below 8192/4 (kept), pair 4 at 4443 (smoothed), pairs 5-7 beyond 8192 (divided by 8).
        // Expected values are transformers' _compute_llama3_parameters for this config.
        var rope = new DecoderConfig.Rope("llama3", 500_000, 8, 1, 4, 8192, true);
        float[] inv = RotaryEmbedding.inverseFrequencies(rope, 16);
        float[] expected = {1.0f, 0.193922758f, 0.0376060307f, 0.00729266508f, 0.000524846022f, 3.42810235e-05f,
                6.64786967e-06f, 1.28917316e-06f};
        for (int i = 0; i < expected.length; i++) {
            assertThat(inv[i]).as("pair %d", i).isCloseTo(expected[i], within(expected[i] * 1e-6f));
        }
        // pair 4 by hand: smooth = (8192 / 4442.88 - 1) / 3 = 0.281282; (1 - smooth) * 0.00141421 / 8 + smooth * 0.00141421
        assertThat(inv[4]).isCloseTo((1 - 0.281282f) * 0.00141421f / 8 + 0.281282f * 0.00141421f, within(1e-8f));
    }

    @Test
    void rotateHalfPairsElementIWithElementIPlusHalf() {
        var rope = new RotaryEmbedding(DecoderConfig.Rope.plain(10_000, false), 4); // inv = 1, 0.01
        float[] first = {1, 0, 0, 0};
        rope.apply(first, 0, 1);
        assertThat(first).containsExactly(new float[] {COS1, 0, SIN1, 0}, within(EPS));
        float[] second = {0, 1, 0, 0};
        rope.apply(second, 0, 1);
        assertThat(second).containsExactly(new float[] {0, COS001, 0, SIN001}, within(EPS));
        float[] partner = {0, 0, 1, 0}; // x[i + d/2] turns towards -x[i]
        rope.apply(partner, 0, 1);
        assertThat(partner).containsExactly(new float[] {-SIN1, 0, COS1, 0}, within(EPS));
    }

    @Test
    void interleavedPairsAdjacentElementsAsComplexNumbers() {
        var rope = new RotaryEmbedding(DecoderConfig.Rope.plain(10_000, true), 4);
        float[] first = {1, 0, 0, 0}; // (1 + 0i) · e^{i·1}
        rope.apply(first, 0, 1);
        assertThat(first).containsExactly(new float[] {COS1, SIN1, 0, 0}, within(EPS));
        float[] second = {0, 0, 0, 1}; // (0 + 1i) · e^{i·0.01} = -sin + i cos
        rope.apply(second, 0, 1);
        assertThat(second).containsExactly(new float[] {0, 0, -SIN001, COS001}, within(EPS));
    }

    @Test
    void positionZeroIsIdentityAndAnglesGrowWithPosition() {
        var rope = new RotaryEmbedding(DecoderConfig.Rope.plain(10_000, false), 4);
        float[] v = {0.3f, -1.2f, 2.5f, 0.7f};
        float[] same = v.clone();
        rope.apply(same, 0, 0);
        assertThat(same).containsExactly(v, within(0f));
        float[] at3 = {1, 0, 0, 0};
        rope.apply(at3, 0, 3);
        assertThat(at3).containsExactly(new float[] {(float) Math.cos(3), 0, (float) Math.sin(3), 0}, within(EPS));
    }

    @Test
    void rotatesOnlyTheHeadAtTheOffset() {
        var rope = new RotaryEmbedding(DecoderConfig.Rope.plain(10_000, false), 4);
        float[] two = {9, 9, 9, 9, 1, 0, 0, 0};
        rope.apply(two, 4, 1);
        assertThat(two).containsExactly(new float[] {9, 9, 9, 9, COS1, 0, SIN1, 0}, within(EPS));
    }
}
