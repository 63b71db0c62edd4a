package dev.moecluster.bench.jmh;

import dev.moecluster.core.moe.ChannelScales;
import dev.moecluster.core.moe.ExpertWeights;
import dev.moecluster.core.tensor.DType;
import dev.moecluster.core.tensor.Numerics;
import dev.moecluster.core.tensor.Tensor;
import java.lang.foreign.Arena;
import java.util.SplittableRandom;

/** Random expert weights and activations of a fixed shape, the same for every benchmark and run. */
final class ExpertFixture {
    /** Hidden size of the benchmarked expert (Mixtral/Qwen-class models are 2048–7168). */
    static final int HIDDEN = 2048;
    /** Intermediate size of the benchmarked expert. */
    static final int INTERMEDIATE = 5632;

    private ExpertFixture() {}

    /** Floating-point operations of one SwiGLU FFN over {@code rows} rows: three GEMMs of H×I each. */
    static double flops(int rows) {
        return 2.0 * rows * 3.0 * HIDDEN * INTERMEDIATE;
    }

    /** The expert in {@code dtype}; FP8 is quantized per output channel, as an FP8 checkpoint's experts are. */
    static ExpertWeights expert(Arena arena, DType dtype) {
        // Linear-init-like scale keeps silu in its curved range, so results are not all zero or overflow.
        if (dtype == DType.FP8_E4M3) {
            float[][] gate = quantized(INTERMEDIATE, HIDDEN, 1, 1.0 / Math.sqrt(HIDDEN));
            float[][] up = quantized(INTERMEDIATE, HIDDEN, 2, 1.0 / Math.sqrt(HIDDEN));
            float[][] down = quantized(HIDDEN, INTERMEDIATE, 3, 1.0 / Math.sqrt(INTERMEDIATE));
            return new ExpertWeights(
                    Tensor.of(arena, dtype, new long[] {INTERMEDIATE, HIDDEN}, gate[0]),
                    Tensor.of(arena, dtype, new long[] {INTERMEDIATE, HIDDEN}, up[0]),
                    Tensor.of(arena, dtype, new long[] {HIDDEN, INTERMEDIATE}, down[0]),
                    new ChannelScales(gate[1], up[1], down[1]));
        }
        return new ExpertWeights(
                tensor(arena, dtype, INTERMEDIATE, HIDDEN, 1, 1.0 / Math.sqrt(HIDDEN)),
                tensor(arena, dtype, INTERMEDIATE, HIDDEN, 2, 1.0 / Math.sqrt(HIDDEN)),
                tensor(arena, dtype, HIDDEN, INTERMEDIATE, 3, 1.0 / Math.sqrt(INTERMEDIATE)));
    }

    /** {@code n × k} values divided by their row's scale (max |value| / 448), and the scales. */
    private static float[][] quantized(int n, int k, long seed, double scale) {
        float[] values = uniform(n * k, seed, scale);
        float[] scales = new float[n];
        for (int r = 0; r < n; r++) {
            float max = 0;
            for (int c = 0; c < k; c++) {
                max = Math.max(max, Math.abs(values[r * k + c]));
            }
            scales[r] = max > 0 ? max / Numerics.FP8_E4M3_MAX : 1f;
            for (int c = 0; c < k; c++) {
                values[r * k + c] /= scales[r];
            }
        }
        return new float[][] {values, scales};
    }

    static float[] activations(int rows) {
        return uniform(rows * HIDDEN, 4, 1.0);
    }

    private static Tensor tensor(Arena arena, DType dtype, int n, int k, long seed, double scale) {
        return Tensor.of(arena, dtype, new long[] {n, k}, uniform(n * k, seed, scale));
    }

    private static float[] uniform(int count, long seed, double scale) {
        SplittableRandom random = new SplittableRandom(seed);
        float[] values = new float[count];
        for (int i = 0; i < count; i++) {
            values[i] = (float) ((random.nextDouble() * 2 - 1) * scale);
        }
        return values;
    }
}
