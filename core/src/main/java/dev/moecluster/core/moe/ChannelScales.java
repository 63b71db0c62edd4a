package dev.moecluster.core.moe;

import static java.util.Objects.requireNonNull;

/**
 * The per-output-channel scales of an FP8 expert, one f32 per weight row: the real weight is
 * {@code code × scale[row]}. The kernels multiply codes as they are and scale each dot product once.
 */
public record ChannelScales(float[] gate, float[] up, float[] down) {
    public ChannelScales {
        requireNonNull(gate, "gate is null");
        requireNonNull(up, "up is null");
        requireNonNull(down, "down is null");
    }

    /** Bytes the scales occupy. */
    public long byteSize() {
        return (long) Float.BYTES * (gate.length + up.length + down.length);
    }

    /** Multiplies column {@code n} of every one of {@code rows} rows of {@code c} ({@code rows × scale.length}) by {@code scale[n]}. */
    static void apply(float[] scale, float[] c, int rows) {
        int n = scale.length;
        for (int r = 0; r < rows; r++) {
            int base = r * n;
            for (int j = 0; j < n; j++) {
                c[base + j] *= scale[j];
            }
        }
    }
}
