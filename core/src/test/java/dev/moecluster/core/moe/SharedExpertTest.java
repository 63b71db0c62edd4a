package dev.moecluster.core.moe;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.assertj.core.api.Assertions.within;

import dev.moecluster.core.tensor.DType;
import dev.moecluster.core.tensor.Tensor;
import java.lang.foreign.Arena;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

class SharedExpertTest {

    /** H = 2, I = 1: gate picks x0, up picks x1, down writes the product times [1, 2]. */
    private static ExpertWeights handExpert(Arena arena) {
        return new ExpertWeights(
                Tensor.of(arena, DType.F32, new long[] {1, 2}, new float[] {1, 0}),
                Tensor.of(arena, DType.F32, new long[] {1, 2}, new float[] {0, 1}),
                Tensor.of(arena, DType.F32, new long[] {2, 1}, new float[] {1, 2}));
    }

    @Test
    void ungatedSharedExpertAddsItsOutputToWhatIsAlreadyThere() {
        try (Arena arena = Arena.ofConfined()) {
            SharedExpert shared = new SharedExpert(handExpert(arena), null);
            // x = [1, 3]: y = silu(1) * 3 * [1, 2] = [2.1931758, 4.3863516]; out starts at [10, 20].
            float[] out = {10, 20};
            shared.addTo(new float[] {1, 3}, 1, out);
            assertThat(out).containsExactly(new float[] {12.1931758f, 24.3863516f}, within(1e-5f));
        }
    }

    @Test
    void qwen2SharedExpertIsScaledBySigmoidOfItsGate() {
        try (Arena arena = Arena.ofConfined()) {
            // shared_expert_gate [1, H] = [ln 3, 0].
            float ln3 = (float) Math.log(3);
            Tensor gate = Tensor.of(arena, DType.F32, new long[] {1, 2}, new float[] {ln3, 0});
            SharedExpert shared = new SharedExpert(handExpert(arena), gate);
            // Row 0, x = [1, 3]: gate·x = ln 3, sigmoid = 3/4; y = [2.1931758, 4.3863516] -> [1.6448818, 3.2897637].
            // Row 1, x = [2, -1]: gate·x = 2 ln 3, sigmoid = 9/10; y = silu(2) * -1 * [1, 2]
            //   = [-1.7615942, -3.5231884] -> [-1.5854348, -3.1708696].
            float[] out = new float[4];
            shared.addTo(new float[] {1, 3, 2, -1}, 2, out);
            assertThat(out).containsExactly(new float[] {1.6448818f, 3.2897637f, -1.5854348f, -3.1708696f}, within(1e-5f));
        }
    }

    @Test
    void gatedSharedExpertMatchesAScalarReference() {
        SplittableRandom r = new SplittableRandom(23);
        int h = 24, inter = 10, rows = 5;
        try (Arena arena = Arena.ofConfined()) {
            ExpertWeights ffn = new ExpertWeights(
                    Tensor.of(arena, DType.BF16, new long[] {inter, h}, ExpertWeightsTest.gaussian(inter * h, r, 0.3)),
                    Tensor.of(arena, DType.BF16, new long[] {inter, h}, ExpertWeightsTest.gaussian(inter * h, r, 0.3)),
                    Tensor.of(arena, DType.BF16, new long[] {h, inter}, ExpertWeightsTest.gaussian(h * inter, r, 0.3)));
            Tensor gate = Tensor.of(arena, DType.BF16, new long[] {1, h}, ExpertWeightsTest.gaussian(h, r, 0.3));
            float[] x = ExpertWeightsTest.gaussian(rows * h, r, 1.0);
            float[] out = new float[rows * h];
            new SharedExpert(ffn, gate).addTo(x, rows, out);
            for (int t = 0; t < rows; t++) {
                double g = 0;
                for (int k = 0; k < h; k++) {
                    g += gate.getFloat(k) * (double) x[t * h + k];
                }
                double s = 1 / (1 + Math.exp(-g));
                double[] y = ExpertWeightsTest.scalarSwiGlu(ffn, x, t * h);
                for (int k = 0; k < h; k++) {
                    assertThat((double) out[t * h + k]).isCloseTo(s * y[k], within(1e-5 * (1 + Math.abs(y[k]))));
                }
            }
        }
    }

    @Test
    void ffnIsRequired() {
        assertThatThrownBy(() -> new SharedExpert(null, null)).isInstanceOf(NullPointerException.class);
    }
}
