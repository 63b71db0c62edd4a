package dev.moecluster.worker;

import dev.moecluster.core.moe.ExpertWeights;
import dev.moecluster.core.tensor.DType;
import dev.moecluster.core.tensor.Tensor;
import java.lang.foreign.Arena;
import java.util.SplittableRandom;

/** Backend tests' experts: bf16 weights drawn from a Gaussian of standard deviation 0.5. */
final class RandomExperts {
    private RandomExperts() {}

    static float[] gaussian(int n, SplittableRandom r) {
        float[] v = new float[n];
        for (int i = 0; i < n; i++) {
            v[i] = (float) r.nextGaussian() * 0.5f;
        }
        return v;
    }

    /** Gate and up {@code intermediate × hidden}, down {@code hidden × intermediate}. */
    static ExpertWeights bf16(Arena arena, SplittableRandom r, int hidden, int intermediate) {
        return new ExpertWeights(
                Tensor.of(arena, DType.BF16, new long[] {intermediate, hidden}, gaussian(intermediate * hidden, r)),
                Tensor.of(arena, DType.BF16, new long[] {intermediate, hidden}, gaussian(intermediate * hidden, r)),
                Tensor.of(arena, DType.BF16, new long[] {hidden, intermediate}, gaussian(hidden * intermediate, r)));
    }
}
