package dev.moecluster.core.moe;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.assertj.core.api.Assertions.within;

import com.google.gson.JsonParser;
import dev.moecluster.core.model.Architecture;
import dev.moecluster.core.model.ModelConfig;
import dev.moecluster.core.tensor.DType;
import org.junit.jupiter.api.Test;

/**
 * Hand-checked gate decisions. Each expected value is derived in the comment above it from the
 * transformers code of the architecture (DESIGN.md, "Gating and expert math").
 */
class GatingTest {

    private static final float EPS = 1e-6f;

    private static Gating gating(Architecture arch, int experts, int k, boolean norm, DType dtype) {
        return new Gating(arch, experts, k, norm, 1, 1, 1f, dtype);
    }

    private static float ln(double x) {
        return (float) Math.log(x);
    }

    /** The logit whose sigmoid is {@code s}. */
    private static float logit(double s) {
        return (float) Math.log(s / (1 - s));
    }

    // ---------------------------------------------------------------- Mixtral

    @Test
    void mixtralRenormalisesTopTwoSoftmaxWeights() {
        // logits [1, 2, 0, -1]: the two largest softmax probabilities are experts 1 (e^2/Z) and 0 (e^1/Z).
        // Divided by their sum, Z cancels: w1 = e^2/(e^2+e^1) = 1/(1+e^-1) = 0.7310586,
        // w0 = e^1/(e^2+e^1) = 1/(1+e) = 0.2689414. Largest first.
        GateResult r = gating(Architecture.MIXTRAL, 4, 2, false, DType.F32).select(new float[] {1, 2, 0, -1}, 1, null);
        assertThat(r.tokens()).isEqualTo(1);
        assertThat(r.k()).isEqualTo(2);
        assertThat(r.experts()).containsExactly(1, 0);
        assertThat(r.weight(0, 0)).isCloseTo(0.7310586f, within(EPS));
        assertThat(r.weight(0, 1)).isCloseTo(0.2689414f, within(EPS));
        assertThat(r.scalesInput()).isFalse();
    }

    @Test
    void mixtralWeightsDependOnlyOnTheChosenLogits() {
        // Renormalisation removes the other experts' share: lowering them changes nothing.
        Gating g = gating(Architecture.MIXTRAL, 4, 2, false, DType.F32);
        GateResult a = g.select(new float[] {1, 2, 0, -1}, 1, null);
        GateResult b = g.select(new float[] {1, 2, -5, -9}, 1, null);
        assertThat(b.experts()).containsExactly(a.experts());
        assertThat(b.weights()).containsExactly(a.weights(), within(EPS));
    }

    @Test
    void mixtralRenormalisesEvenWhenTheConfigSaysNotTo() {
        // MixtralTopKRouter always divides by the sum; norm_topk_prob is not a Mixtral field.
        GateResult r = gating(Architecture.MIXTRAL, 4, 2, false, DType.F32).select(new float[] {1, 2, 0, -1}, 1, null);
        assertThat(r.weight(0, 0) + r.weight(0, 1)).isCloseTo(1f, within(EPS));
    }

    @Test
    void mixtralWeightsStayF32InABf16Model() {
        // transformers 5 keeps Mixtral's routing weights in fp32: 0.7310586 is not rounded to bf16 0.73046875.
        GateResult r = gating(Architecture.MIXTRAL, 4, 2, false, DType.BF16).select(new float[] {1, 2, 0, -1}, 1, null);
        assertThat(r.weight(0, 0)).isCloseTo(0.7310586f, within(EPS)).isNotEqualTo(0.73046875f);
    }

    @Test
    void eachTokenIsRoutedFromItsOwnRow() {
        // Token 0: logits [1, 2, 0, -1] -> experts 1, 0 as above. Token 1: [0, 0, 3, 3] -> a tie between
        // experts 2 and 3, each 1/2 after renormalisation, lower index first.
        GateResult r = gating(Architecture.MIXTRAL, 4, 2, false, DType.F32)
                .select(new float[] {1, 2, 0, -1, 0, 0, 3, 3}, 2, null);
        assertThat(r.experts()).containsExactly(1, 0, 2, 3);
        assertThat(r.expert(1, 0)).isEqualTo(2);
        assertThat(r.weight(1, 0)).isCloseTo(0.5f, within(EPS));
        assertThat(r.weight(1, 1)).isCloseTo(0.5f, within(EPS));
    }

    // ---------------------------------------------------------------- Qwen3-MoE / Qwen2-MoE

    // logits ln [1, 4, 2, 1]: softmax = [1, 4, 2, 1] / 8 = [0.125, 0.5, 0.25, 0.125]; top-2 = experts 1, 2.
    private static final float[] QWEN_LOGITS = {ln(1), ln(4), ln(2), ln(1)};

    @Test
    void qwen3WithoutNormTopkProbKeepsTheRawSoftmaxProbabilities() {
        GateResult r = gating(Architecture.QWEN3_MOE, 4, 2, false, DType.F32).select(QWEN_LOGITS, 1, null);
        assertThat(r.experts()).containsExactly(1, 2);
        assertThat(r.weight(0, 0)).isCloseTo(0.5f, within(EPS));
        assertThat(r.weight(0, 1)).isCloseTo(0.25f, within(EPS));
        assertThat(r.scalesInput()).isFalse();
    }

    @Test
    void qwen3WithNormTopkProbRenormalisesTheTopK() {
        // 0.5 / 0.75 = 2/3 and 0.25 / 0.75 = 1/3.
        GateResult r = gating(Architecture.QWEN3_MOE, 4, 2, true, DType.F32).select(QWEN_LOGITS, 1, null);
        assertThat(r.experts()).containsExactly(1, 2);
        assertThat(r.weight(0, 0)).isCloseTo(2f / 3f, within(EPS));
        assertThat(r.weight(0, 1)).isCloseTo(1f / 3f, within(EPS));
    }

    @Test
    void qwen3WeightsAreRoundedToBf16InABf16Model() {
        // router_top_value.to(router_logits.dtype): 2/3 (0x3f2aaaab) -> bf16 0x3f2b = 0.66796875,
        // 1/3 (0x3eaaaaab) -> bf16 0x3eab = 0.333984375.
        GateResult r = gating(Architecture.QWEN3_MOE, 4, 2, true, DType.BF16).select(QWEN_LOGITS, 1, null);
        assertThat(r.weight(0, 0)).isEqualTo(0.66796875f);
        assertThat(r.weight(0, 1)).isEqualTo(0.333984375f);
    }

    @Test
    void qwen3WithoutNormRoundsTiedProbabilitiesToBf16AndPrefersLowerExperts() {
        // logits [0, 0, 0]: every probability is 1/3; the tie goes to experts 0 and 1; 1/3 in bf16 is 0.333984375.
        GateResult r = gating(Architecture.QWEN3_MOE, 3, 2, false, DType.BF16).select(new float[] {0, 0, 0}, 1, null);
        assertThat(r.experts()).containsExactly(0, 1);
        assertThat(r.weights()).containsExactly(0.333984375f, 0.333984375f);
    }

    @Test
    void qwen2UsesTheSameRouterAsQwen3() {
        // Qwen1.5-MoE has norm_topk_prob false: raw probabilities 0.5 and 0.25.
        GateResult r = gating(Architecture.QWEN2_MOE, 4, 2, false, DType.F32).select(QWEN_LOGITS, 1, null);
        assertThat(r.experts()).containsExactly(1, 2);
        assertThat(r.weights()).containsExactly(new float[] {0.5f, 0.25f}, within(EPS));
    }

    @Test
    void gatingFromAConfigUsesItsNormFlagAndDtype() {
        ModelConfig config = ModelConfig.parse(JsonParser.parseString("""
                {"architectures": ["Qwen3MoeForCausalLM"], "hidden_size": 8, "num_hidden_layers": 1,
                 "num_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 4, "norm_topk_prob": true,
                 "torch_dtype": "bfloat16"}
                """).getAsJsonObject(), "q");
        Gating g = new Gating(config);
        assertThat(g.k()).isEqualTo(2);
        GateResult r = g.select(QWEN_LOGITS, 1, null);
        assertThat(r.weights()).containsExactly(0.66796875f, 0.333984375f);
    }

    // ---------------------------------------------------------------- Llama 4

    @Test
    void llama4TakesTopOneOfTheLogitsAndScalesTheInputBySigmoid() {
        // logits [0.5, 2, -1, 2]: top-1 of raw logits is 2, tied between experts 1 and 3 -> expert 1.
        // Weight = sigmoid(2) = 1/(1+e^-2) = 0.8807971, no softmax, no renormalisation.
        GateResult r = gating(Architecture.LLAMA4, 4, 1, false, DType.F32).select(new float[] {0.5f, 2, -1, 2}, 1, null);
        assertThat(r.experts()).containsExactly(1);
        assertThat(r.weight(0, 0)).isCloseTo(0.8807971f, within(EPS));
        assertThat(r.scalesInput()).isTrue();
    }

    @Test
    void llama4RoundsTheSigmoidToTheModelDtype() {
        // sigmoid(2) = 0.8807971 = 0x3f617c1c -> bf16 0x3f61 = 0.87890625 (the dropped half is below the tie).
        GateResult r = gating(Architecture.LLAMA4, 4, 1, false, DType.BF16).select(new float[] {0.5f, 2, -1, 2}, 1, null);
        assertThat(r.weight(0, 0)).isEqualTo(0.87890625f);
    }

    @Test
    void llama4ChoosesTheLargestLogitEvenWhenAllAreNegative() {
        // logits [-3, -1, -2, -4] -> expert 1, weight sigmoid(-1) = 0.2689414 (well below 1/2).
        GateResult r = gating(Architecture.LLAMA4, 4, 1, false, DType.F32).select(new float[] {-3, -1, -2, -4}, 1, null);
        assertThat(r.experts()).containsExactly(1);
        assertThat(r.weight(0, 0)).isCloseTo(0.2689414f, within(EPS));
    }

    @Test
    void llama4WithTopTwoGivesEachChosenExpertItsOwnSigmoid() {
        // logits [1, 3, 2, 0], k = 2 -> experts 1, 2 with sigmoid(3) = 0.9525741 and sigmoid(2) = 0.8807971;
        // they sum to 1.83: nothing is renormalised.
        GateResult r = gating(Architecture.LLAMA4, 4, 2, true, DType.F32).select(new float[] {1, 3, 2, 0}, 1, null);
        assertThat(r.experts()).containsExactly(1, 2);
        assertThat(r.weights()).containsExactly(new float[] {0.9525741f, 0.8807971f}, within(EPS));
    }

    // ---------------------------------------------------------------- DeepSeek-V3

    // Sigmoid scores by group (n_group 4, two experts each):
    //   g0 [0.9, 0.1] sum 1.0 | g1 [0.6, 0.6] sum 1.2 | g2 [0.8, 0.3] sum 1.1 | g3 [0.2, 0.2] sum 0.4
    private static final double[] DS_SCORES = {0.9, 0.1, 0.6, 0.6, 0.8, 0.3, 0.2, 0.2};

    private static float[] dsLogits() {
        float[] l = new float[DS_SCORES.length];
        for (int i = 0; i < l.length; i++) {
            l[i] = logit(DS_SCORES[i]);
        }
        return l;
    }

    private static Gating deepseek(boolean norm, float scaling, DType dtype) {
        return new Gating(Architecture.DEEPSEEK_V3, 8, 2, norm, 4, 2, scaling, dtype);
    }

    @Test
    void deepseekKeepsTheBestGroupsBySumOfTopTwoAndPicksInsideThem() {
        // Groups kept (topk_group 2): g1 (1.2) and g2 (1.1). Expert 0 has the best score (0.9) but its group
        // sums to 1.0, so it is out (scoring groups by their maximum would keep g0 and pick experts 0, 4).
        // Inside g1 + g2: expert 4 (0.8), then the 0.6 tie between 2 and 3 -> expert 2.
        // Weights: 0.8 / 1.4 * 2.5 = 1.4285714, 0.6 / 1.4 * 2.5 = 1.0714286.
        GateResult r = deepseek(true, 2.5f, DType.F32).select(dsLogits(), 1, null);
        assertThat(r.experts()).containsExactly(4, 2);
        assertThat(r.weight(0, 0)).isCloseTo(1.4285714f, within(EPS));
        assertThat(r.weight(0, 1)).isCloseTo(1.0714286f, within(EPS));
        assertThat(r.scalesInput()).isFalse();
    }

    @Test
    void deepseekCorrectionBiasChangesTheChoiceButNotTheWeights() {
        // Bias +0.5 on g3 makes its choice scores 0.7 + 0.7 = 1.4: groups kept are g3 (1.4) and g1 (1.2).
        // Choice inside: experts 6 and 7 (0.7 each, tie -> 6 first). Weights use the unbiased 0.2 and 0.2:
        // normalised 0.5 and 0.5, times 2.5 = 1.25 each.
        float[] bias = {0, 0, 0, 0, 0, 0, 0.5f, 0.5f};
        GateResult r = deepseek(true, 2.5f, DType.F32).select(dsLogits(), 1, bias);
        assertThat(r.experts()).containsExactly(6, 7);
        assertThat(r.weights()).containsExactly(new float[] {1.25f, 1.25f}, within(EPS));
    }

    @Test
    void deepseekBiasBreaksATieButTheWeightIsTheUnbiasedScore() {
        // Bias +0.05 on expert 3: g1 = 0.6 + 0.65 = 1.25, still kept with g2. Choice: 4 (0.8), 3 (0.65).
        // Weights: 0.8 / (0.8 + 0.6) * 2.5 = 1.4285714 and 0.6 / 1.4 * 2.5 = 1.0714286 (0.6, not 0.65).
        float[] bias = {0, 0, 0, 0.05f, 0, 0, 0, 0};
        GateResult r = deepseek(true, 2.5f, DType.F32).select(dsLogits(), 1, bias);
        assertThat(r.experts()).containsExactly(4, 3);
        assertThat(r.weights()).containsExactly(new float[] {1.4285714f, 1.0714286f}, within(EPS));
    }

    @Test
    void deepseekWithoutNormScalesTheRawSigmoid() {
        // Same choice as without bias; weights 0.8 * 2.5 = 2.0 and 0.6 * 2.5 = 1.5.
        GateResult r = deepseek(false, 2.5f, DType.F32).select(dsLogits(), 1, null);
        assertThat(r.experts()).containsExactly(4, 2);
        assertThat(r.weights()).containsExactly(new float[] {2.0f, 1.5f}, within(EPS));
    }

    @Test
    void deepseekWeightsStayF32InABf16Model() {
        // The whole DeepSeek-V3 router is fp32: 1.4285714 is not rounded to bf16 1.4296875.
        GateResult r = deepseek(true, 2.5f, DType.BF16).select(dsLogits(), 1, null);
        assertThat(r.weight(0, 0)).isCloseTo(1.4285714f, within(EPS)).isNotEqualTo(1.4296875f);
    }

    @Test
    void deepseekGroupScoreIsTheSumOfTheTopTwoNotOfTheWholeGroup() {
        // n_group 2 of four experts, topk_group 1.
        //   g0 [0.55, 0.55, 0.55, 0.55]: top-2 sum 1.1, whole sum 2.2
        //   g1 [0.9, 0.3, 0.3, 0.3]:     top-2 sum 1.2, whole sum 1.8
        // Top-2 keeps g1 (a whole-group sum would keep g0). Inside: 4 (0.9), then 5 (0.3, lowest of the tie).
        // Normalised, scaling 1: 0.9 / 1.2 = 0.75 and 0.3 / 1.2 = 0.25.
        double[] s = {0.55, 0.55, 0.55, 0.55, 0.9, 0.3, 0.3, 0.3};
        float[] logits = new float[8];
        for (int i = 0; i < 8; i++) {
            logits[i] = logit(s[i]);
        }
        GateResult r = new Gating(Architecture.DEEPSEEK_V3, 8, 2, true, 2, 1, 1f, DType.F32).select(logits, 1, null);
        assertThat(r.experts()).containsExactly(4, 5);
        assertThat(r.weights()).containsExactly(new float[] {0.75f, 0.25f}, within(EPS));
    }

    @Test
    void deepseekWithOneGroupChoosesAmongAllExperts() {
        // No group limit: experts 0 (0.9) and 4 (0.8); 0.9 / 1.7 = 0.5294118 and 0.8 / 1.7 = 0.4705882.
        GateResult r = new Gating(Architecture.DEEPSEEK_V3, 8, 2, true, 1, 1, 1f, DType.F32).select(dsLogits(), 1, null);
        assertThat(r.experts()).containsExactly(0, 4);
        assertThat(r.weights()).containsExactly(new float[] {0.5294118f, 0.4705882f}, within(EPS));
    }

    @Test
    void deepseekRejectsExpertsThatDoNotSplitIntoGroups() {
        assertThatThrownBy(() -> new Gating(Architecture.DEEPSEEK_V3, 10, 2, true, 4, 2, 1f, DType.F32))
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("10 experts do not split into 4 groups");
    }

    @Test
    void impossibleGroupAndTopKSettingsAreRejectedUpFront() {
        assertThatThrownBy(() -> new Gating(Architecture.DEEPSEEK_V3, 8, 2, true, 4, 5, 1f, DType.F32))
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("topk_group 5 is more than n_group 4");
        assertThatThrownBy(() -> new Gating(Architecture.MIXTRAL, 4, 5, false, 1, 1, 1f, DType.F32))
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("experts per token 5");
        assertThatThrownBy(() -> new Gating(Architecture.LLAMA4, 4, 0, false, 1, 1, 1f, DType.F32))
                .isInstanceOf(IllegalArgumentException.class);
    }

    // ---------------------------------------------------------------- helpers

    @Test
    void topKReturnsLargestFirstAndBreaksTiesTowardsTheLowerIndex() {
        int[] out = new int[3];
        Gating.topK(new float[] {1, 3, 3, 2}, out);
        assertThat(out).containsExactly(1, 2, 3);
        int[] two = new int[2];
        Gating.topK(new float[] {Float.NEGATIVE_INFINITY, Float.NEGATIVE_INFINITY, Float.NEGATIVE_INFINITY}, two);
        assertThat(two).containsExactly(0, 1);
        Gating.topK(new float[] {5, 5, 5, 5}, two);
        assertThat(two).containsExactly(0, 1);
    }

    @Test
    void softmaxIsStableForLargeLogits() {
        // exp(1000) overflows; shifted by the maximum it is [1/(1+e), e/(1+e)].
        float[] v = {1000, 1001};
        Gating.softmax(v);
        assertThat(v).containsExactly(new float[] {0.2689414f, 0.7310586f}, within(EPS));
        float[] w = {-1000, 0};
        Gating.softmax(w);
        assertThat(w).containsExactly(0f, 1f);
    }

    @Test
    void sigmoidOfKnownValues() {
        assertThat(Gating.sigmoid(0)).isEqualTo(0.5f);
        assertThat(Gating.sigmoid(ln(3))).isCloseTo(0.75f, within(EPS));
        assertThat(Gating.sigmoid(-100)).isCloseTo(0f, within(EPS));
        assertThat(Gating.sigmoid(100)).isEqualTo(1f);
    }

    @Test
    void gateResultIndexesTokensBySlot() {
        GateResult r = new GateResult(2, 2, new int[] {3, 1, 0, 2}, new float[] {0.6f, 0.4f, 0.9f, 0.1f}, false);
        assertThat(r.expert(1, 1)).isEqualTo(2);
        assertThat(r.weight(1, 0)).isEqualTo(0.9f);
        assertThatThrownBy(() -> new GateResult(2, 2, new int[3], new float[4], false))
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("2 tokens x 2");
    }
}
