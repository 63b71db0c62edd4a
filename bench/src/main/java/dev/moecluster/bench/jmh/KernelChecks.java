package dev.moecluster.bench.jmh;

/** Guards that a benchmarked kernel computes what the reference computes before it is timed. */
final class KernelChecks {
    private KernelChecks() {}

    /** Fails unless every element is within 1e-3 of the reference, relative to the reference's largest. */
    static void requireClose(String what, float[] expected, float[] actual) {
        float scale = 0;
        for (float v : expected) {
            scale = Math.max(scale, Math.abs(v));
        }
        float worst = 0;
        for (int i = 0; i < expected.length; i++) {
            worst = Math.max(worst, Math.abs(expected[i] - actual[i]));
        }
        if (!(worst <= 1e-3f * Math.max(scale, 1e-6f))) {
            throw new IllegalStateException(what + " differs from the reference by " + worst + " (largest value " + scale + ")");
        }
    }
}
