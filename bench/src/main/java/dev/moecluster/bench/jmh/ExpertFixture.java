package dev.moecluster.bench.jmh;

import dev.moecluster.core.moe.ExpertWeights;
import dev.moecluster.core.tensor.DType;
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

    static ExpertWeights expert(Arena arena, DType dtype) {
        // Linear-init-like scale keeps silu in its curved range, so results are not all zero or overflow.
        return new ExpertWeights(
                tensor(arena, dtype, INTERMEDIATE, HIDDEN, 1, 1.0 / Math.sqrt(HIDDEN)),
                tensor(arena, dtype, INTERMEDIATE, HIDDEN, 2, 1.0 / Math.sqrt(HIDDEN)),
                tensor(arena, dtype, HIDDEN, INTERMEDIATE, 3, 1.0 / Math.sqrt(INTERMEDIATE)));
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
