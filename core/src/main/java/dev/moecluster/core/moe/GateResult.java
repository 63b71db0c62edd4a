package dev.moecluster.core.moe;

/**
 * The gate's choice for a batch of tokens: for token {@code t}, experts
 * {@code experts[t*k .. t*k+k)} with weights at the same indices.
 *
 * @param scalesInput true when weights multiply the expert's input (Llama 4) instead of its output
 */
public record GateResult(int tokens, int k, int[] experts, float[] weights, boolean scalesInput) {
    public GateResult {
        if (experts.length != tokens * k || weights.length != tokens * k) {
            throw new IllegalArgumentException("gate result arrays do not match " + tokens + " tokens x " + k);
        }
    }

    public int expert(int token, int slot) {
        return experts[token * k + slot];
    }

    public float weight(int token, int slot) {
        return weights[token * k + slot];
    }
}
