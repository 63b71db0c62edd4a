package dev.moecluster.core.runner;

import static java.util.Objects.requireNonNull;

/**
 * Rotary position embeddings for one head dimension, computed in f32 as transformers does
 * ({@code modeling_rope_utils}: the default and {@code linear} inverse frequencies and
 * {@code _compute_llama3_parameters}; angles {@code position · inv_freq} in f32). Two pair layouts:
 * {@code rotate_half} (Mixtral, Qwen: element {@code i} pairs with {@code i + d/2}) and the
 * interleaved complex form of Llama 4 (element {@code 2i} pairs with {@code 2i + 1}); both rotate
 * pair {@code i} by angle {@code position · inv_freq[i]}.
 */
final class RotaryEmbedding {
    private final float[] invFreq;
    private final boolean interleaved;
    private final int headDim;

    RotaryEmbedding(DecoderConfig.Rope rope, int headDim) {
        requireNonNull(rope, "rope is null");
        this.headDim = headDim;
        this.interleaved = rope.interleaved();
        this.invFreq = inverseFrequencies(rope, headDim);
    }

    /** {@code inv_freq} as transformers computes it for the rope type, length {@code headDim / 2}. */
    static float[] inverseFrequencies(DecoderConfig.Rope rope, int headDim) {
        int half = headDim / 2;
        float[] inv = new float[half];
        for (int i = 0; i < half; i++) {
            float exponent = (float) (2 * i) / headDim;
            inv[i] = 1f / (float) Math.pow(rope.theta(), exponent);
        }
        switch (rope.type()) {
            case "default" -> { }
            case "linear" -> {
                for (int i = 0; i < half; i++) {
                    inv[i] = inv[i] / (float) rope.factor();
                }
            }
            case "llama3" -> llama3(rope, inv);
            default -> throw new IllegalArgumentException("rope type " + rope.type() + " is not supported");
        }
        return inv;
    }

    /**
     * Llama 3.1 scaling: long wavelengths (beyond {@code original / low_freq_factor}) are divided by
     * {@code factor}, short ones (below {@code original / high_freq_factor}) kept, and the band
     * between interpolated smoothly.
     */
    private static void llama3(DecoderConfig.Rope rope, float[] inv) {
        float factor = (float) rope.factor();
        float low = (float) rope.lowFreqFactor();
        float high = (float) rope.highFreqFactor();
        float old = (float) rope.originalMaxPositions();
        float lowFreqWavelen = (float) (rope.originalMaxPositions() / rope.lowFreqFactor());
        float highFreqWavelen = (float) (rope.originalMaxPositions() / rope.highFreqFactor());
        for (int i = 0; i < inv.length; i++) {
            float wavelen = (float) (2 * Math.PI) / inv[i];
            float scaled = wavelen > lowFreqWavelen ? inv[i] / factor : inv[i];
            boolean medium = !(wavelen < highFreqWavelen) && !(wavelen > lowFreqWavelen);
            if (medium) {
                float smooth = (old / wavelen - low) / (high - low);
                scaled = (1 - smooth) * scaled / factor + smooth * scaled;
            }
            inv[i] = scaled;
        }
    }

    float inverseFrequency(int pair) {
        return invFreq[pair];
    }

    int headDim() {
        return headDim;
    }

    /** Writes the {@code headDim / 2} cosines and sines for {@code position} at {@code at}. */
    void angles(int position, float[] cos, float[] sin, int at) {
        for (int i = 0; i < invFreq.length; i++) {
            float angle = (float) position * invFreq[i];
            cos[at + i] = (float) Math.cos(angle);
            sin[at + i] = (float) Math.sin(angle);
        }
    }

    /** Rotates the head vector {@code v[offset, offset + headDim)} by angles written by {@link #angles}. */
    void rotate(float[] v, int offset, float[] cos, float[] sin, int at) {
        int half = headDim / 2;
        for (int i = 0; i < half; i++) {
            int a = interleaved ? offset + 2 * i : offset + i;
            int b = interleaved ? a + 1 : a + half;
            float x0 = v[a];
            float x1 = v[b];
            float c = cos[at + i];
            float s = sin[at + i];
            v[a] = x0 * c - x1 * s;
            v[b] = x1 * c + x0 * s;
        }
    }

    /** Rotates the head vector {@code v[offset, offset + headDim)} in place for {@code position}. */
    void apply(float[] v, int offset, int position) {
        float[] cos = new float[headDim / 2];
        float[] sin = new float[headDim / 2];
        angles(position, cos, sin, 0);
        rotate(v, offset, cos, sin, 0);
    }
}
