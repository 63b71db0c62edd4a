package dev.moecluster.core.runner;

/**
 * Root-mean-square normalisation in f32, as transformers' {@code *RMSNorm}:
 * {@code weight * (x * rsqrt(mean(x²) + eps))}. Without a weight it is Llama 4's
 * {@code Llama4TextL2Norm}, which despite its name divides by the RMS, not the L2 norm.
 */
final class RmsNorm {
    private RmsNorm() {}

    /**
     * Normalises {@code x[from, from + n)} into {@code out[to, to + n)}; {@code weight} may be null.
     * {@code out} may be {@code x} with {@code to == from}.
     */
    static void apply(float[] x, int from, int n, float[] weight, float eps, float[] out, int to) {
        double sumSquares = 0;
        for (int i = 0; i < n; i++) {
            float v = x[from + i];
            sumSquares += v * v;
        }
        float variance = (float) (sumSquares / n);
        float inverse = (float) (1.0 / Math.sqrt(variance + eps));
        for (int i = 0; i < n; i++) {
            float y = x[from + i] * inverse;
            out[to + i] = weight == null ? y : weight[i] * y;
        }
    }

    /** Normalises each of {@code rows} rows of width {@code n} of {@code x} into a new array. */
    static float[] rows(float[] x, int rows, int n, float[] weight, float eps) {
        float[] out = new float[rows * n];
        for (int r = 0; r < rows; r++) {
            apply(x, r * n, n, weight, eps, out, r * n);
        }
        return out;
    }
}
