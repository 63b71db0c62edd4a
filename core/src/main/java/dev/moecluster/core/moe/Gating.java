package dev.moecluster.core.moe;

import dev.moecluster.core.model.Architecture;
import dev.moecluster.core.model.ModelConfig;
import dev.moecluster.core.tensor.DType;
import dev.moecluster.core.tensor.Numerics;
import java.util.Arrays;

/**
 * Turns router logits into expert choices and weights, exactly as each architecture's transformers
 * code does (docs/DESIGN.md, "Gating and expert math"):
 * <ul>
 *   <li>Mixtral: softmax in f32, top-k, divide by their sum; weights stay f32, applied to outputs.
 *   <li>Qwen3-MoE / Qwen2-MoE: softmax in f32, top-k, renormalise if {@code norm_topk_prob}; weights
 *       cast back to the model dtype, applied to outputs.
 *   <li>Llama 4: top-k of raw logits, sigmoid in f32 cast to the model dtype, applied to the
 *       expert's <em>input</em>.
 *   <li>DeepSeek-V3: sigmoid; choice by score + correction bias within the {@code topk_group} best
 *       groups (a group scores the sum of its top two); weights are the unbiased scores, normalised
 *       if {@code norm_topk_prob}, times {@code routed_scaling_factor}.
 * </ul>
 * Ties are broken towards the lower expert index.
 */
public final class Gating {
    private final Architecture architecture;
    private final int numExperts;
    private final int k;
    private final boolean normTopk;
    private final int nGroup;
    private final int topkGroup;
    private final float routedScalingFactor;
    private final DType modelDtype;

    public Gating(ModelConfig config) {
        this(config.architecture(), config.numExperts(), config.expertsPerToken(), config.normTopkProb(),
                config.nGroup(), config.topkGroup(), config.routedScalingFactor(), config.dtype());
    }

    public Gating(Architecture architecture, int numExperts, int k, boolean normTopk, int nGroup, int topkGroup,
            float routedScalingFactor, DType modelDtype) {
        this.architecture = architecture;
        this.numExperts = numExperts;
        this.k = k;
        this.normTopk = normTopk;
        this.nGroup = Math.max(1, nGroup);
        this.topkGroup = Math.max(1, topkGroup);
        this.routedScalingFactor = routedScalingFactor;
        this.modelDtype = modelDtype;
        if (numExperts % this.nGroup != 0) {
            throw new IllegalArgumentException(numExperts + " experts do not split into " + nGroup + " groups");
        }
        // Checked here, at load, because select() would otherwise fail per request with an index error.
        if (k <= 0 || k > numExperts) {
            throw new IllegalArgumentException("experts per token " + k + " must be in 1.." + numExperts);
        }
        if (this.topkGroup > this.nGroup) {
            throw new IllegalArgumentException("topk_group " + topkGroup + " is more than n_group " + nGroup);
        }
    }

    public int k() {
        return k;
    }

    /**
     * Selects experts for {@code tokens} rows of {@code logits} ({@code tokens × E}, f32).
     *
     * @param correctionBias DeepSeek-V3's {@code e_score_correction_bias}, or null
     */
    public GateResult select(float[] logits, int tokens, float[] correctionBias) {
        int e = numExperts;
        int[] experts = new int[tokens * k];
        float[] weights = new float[tokens * k];
        float[] row = new float[e];
        float[] choice = new float[e];
        int[] picked = new int[k];
        for (int t = 0; t < tokens; t++) {
            System.arraycopy(logits, t * e, row, 0, e);
            int base = t * k;
            switch (architecture) {
                case MIXTRAL, QWEN3_MOE, QWEN2_MOE -> {
                    softmax(row);
                    topK(row, picked);
                    float sum = 0f;
                    for (int j = 0; j < k; j++) {
                        sum += row[picked[j]];
                    }
                    boolean renormalise = architecture == Architecture.MIXTRAL || normTopk;
                    for (int j = 0; j < k; j++) {
                        float w = renormalise ? row[picked[j]] / sum : row[picked[j]];
                        experts[base + j] = picked[j];
                        weights[base + j] = architecture == Architecture.MIXTRAL ? w : Numerics.roundTo(modelDtype, w);
                    }
                }
                case LLAMA4 -> {
                    topK(row, picked);
                    for (int j = 0; j < k; j++) {
                        experts[base + j] = picked[j];
                        weights[base + j] = Numerics.roundTo(modelDtype, sigmoid(row[picked[j]]));
                    }
                }
                case DEEPSEEK_V3 -> {
                    for (int i = 0; i < e; i++) {
                        row[i] = sigmoid(row[i]);
                        choice[i] = row[i] + (correctionBias == null ? 0f : correctionBias[i]);
                    }
                    maskGroups(choice);
                    topK(choice, picked);
                    float sum = 0f;
                    for (int j = 0; j < k; j++) {
                        sum += row[picked[j]];
                    }
                    for (int j = 0; j < k; j++) {
                        float w = row[picked[j]];
                        if (normTopk) {
                            w /= sum + 1e-20f;
                        }
                        experts[base + j] = picked[j];
                        weights[base + j] = w * routedScalingFactor;
                    }
                }
            }
        }
        return new GateResult(tokens, k, experts, weights, architecture == Architecture.LLAMA4);
    }

    /** Sets the scores of experts outside the {@code topk_group} best groups to -inf. */
    private void maskGroups(float[] choice) {
        if (nGroup <= 1) {
            return;
        }
        int size = numExperts / nGroup;
        float[] groupScore = new float[nGroup];
        for (int g = 0; g < nGroup; g++) {
            float first = Float.NEGATIVE_INFINITY;
            float second = Float.NEGATIVE_INFINITY;
            for (int i = g * size; i < (g + 1) * size; i++) {
                float v = choice[i];
                if (v > first) {
                    second = first;
                    first = v;
                } else if (v > second) {
                    second = v;
                }
            }
            groupScore[g] = size == 1 ? first : first + second;
        }
        int[] keep = new int[topkGroup];
        topK(groupScore, keep);
        boolean[] kept = new boolean[nGroup];
        for (int g : keep) {
            kept[g] = true;
        }
        for (int g = 0; g < nGroup; g++) {
            if (!kept[g]) {
                Arrays.fill(choice, g * size, (g + 1) * size, Float.NEGATIVE_INFINITY);
            }
        }
    }

    /** Indices of the {@code out.length} largest values, largest first, lower index on ties. */
    static void topK(float[] values, int[] out) {
        int n = out.length;
        for (int j = 0; j < n; j++) {
            int best = -1;
            for (int i = 0; i < values.length; i++) {
                if (contains(out, j, i)) {
                    continue;
                }
                if (best < 0 || values[i] > values[best]) {
                    best = i;
                }
            }
            out[j] = best;
        }
    }

    private static boolean contains(int[] a, int len, int v) {
        for (int i = 0; i < len; i++) {
            if (a[i] == v) {
                return true;
            }
        }
        return false;
    }

    static void softmax(float[] v) {
        float max = Float.NEGATIVE_INFINITY;
        for (float x : v) {
            max = Math.max(max, x);
        }
        float sum = 0f;
        for (int i = 0; i < v.length; i++) {
            v[i] = (float) Math.exp(v[i] - max);
            sum += v[i];
        }
        for (int i = 0; i < v.length; i++) {
            v[i] /= sum;
        }
    }

    static float sigmoid(float x) {
        return (float) (1.0 / (1.0 + Math.exp(-x)));
    }
}
