package dev.moecluster.router.generate;

import static org.assertj.core.api.Assertions.assertThat;

import dev.moecluster.proto.SamplingParams;
import java.util.HashMap;
import java.util.Map;
import org.junit.jupiter.api.Test;

class SamplerTest {
    private static final float[] LOGITS = {1f, 3f, 2f, 3f, -1f};

    @Test
    void temperatureZeroIsArgmaxWithLowestIndexOnTies() {
        Sampler s = new Sampler(0f, 1f, 0, 1);
        assertThat(s.sample(LOGITS)).isEqualTo(1);
    }

    @Test
    void topKOneIsGreedyWhateverTheTemperature() {
        Sampler s = new Sampler(5f, 1f, 1, 7);
        for (int i = 0; i < 50; i++) {
            assertThat(s.sample(LOGITS)).isEqualTo(1);
        }
    }

    @Test
    void topPKeepsTheSmallestSetReachingTheMass() {
        // softmax at T=1 of {3, 3, 2, 1, -1}: the two 3s hold 0.66 together, so top_p 0.6 keeps only them
        Sampler s = new Sampler(1f, 0.6f, 0, 3);
        Map<Integer, Integer> seen = new HashMap<>();
        for (int i = 0; i < 400; i++) {
            seen.merge(s.sample(LOGITS), 1, Integer::sum);
        }
        assertThat(seen.keySet()).containsExactlyInAnyOrder(1, 3);
        assertThat(seen.get(1)).isBetween(150, 250);
    }

    @Test
    void fullSamplingFollowsTheSoftmax() {
        Sampler s = new Sampler(1f, 1f, 0, 11);
        int[] counts = new int[LOGITS.length];
        int n = 20_000;
        for (int i = 0; i < n; i++) {
            counts[s.sample(LOGITS)]++;
        }
        double z = 0;
        for (float l : LOGITS) {
            z += Math.exp(l);
        }
        for (int i = 0; i < LOGITS.length; i++) {
            assertThat(counts[i] / (double) n).as("token %d", i).isCloseTo(Math.exp(LOGITS[i]) / z, org.assertj.core.data.Offset.offset(0.02));
        }
    }

    @Test
    void sameSeedSameTokens() {
        Sampler a = new Sampler(1.3f, 0.95f, 4, 99);
        Sampler b = new Sampler(1.3f, 0.95f, 4, 99);
        for (int i = 0; i < 100; i++) {
            assertThat(a.sample(LOGITS)).isEqualTo(b.sample(LOGITS));
        }
    }

    @Test
    void validationNamesTheBadParameter() {
        assertThat(Sampler.validate(SamplingParams.getDefaultInstance())).isNull();
        assertThat(Sampler.validate(SamplingParams.newBuilder().setMaxTokens(0).build())).contains("max_tokens must be positive");
        assertThat(Sampler.validate(SamplingParams.newBuilder().setTopP(0f).build())).contains("top_p must be in (0, 1]");
        assertThat(Sampler.validate(SamplingParams.newBuilder().setTopP(1.01f).build())).contains("top_p");
        assertThat(Sampler.validate(SamplingParams.newBuilder().setTemperature(-1f).build())).contains("temperature");
        assertThat(Sampler.validate(SamplingParams.newBuilder().setTemperature(Float.NaN).build())).contains("temperature");
        assertThat(Sampler.validate(SamplingParams.newBuilder().setTopK(-2).build())).contains("top_k");
        assertThat(Sampler.validate(SamplingParams.newBuilder().addStop("").build())).contains("stop strings");
    }

    @Test
    void presenceAndFrequencyPenaltiesSubtractForGeneratedTokens() {
        // greedy: 1 wins (3 vs 3, lower index); then 1 is penalized by presence 0.5 + frequency 0.25 per use
        Sampler s = new Sampler(0f, 1f, 0, 1, 0.5f, 0.25f, 1f, new int[] {1, 1, 1});
        assertThat(s.sample(LOGITS)).isEqualTo(1);
        float[] after = s.penalized(LOGITS);
        assertThat(after).containsExactly(1f, 3f - 0.75f, 2f, 3f, -1f); // the prompt's 1s do not count
        assertThat(s.sample(LOGITS)).isEqualTo(3);
        assertThat(s.penalized(LOGITS)).containsExactly(1f, 2.25f, 2f, 2.25f, -1f);
        assertThat(s.sample(LOGITS)).isEqualTo(1);
        assertThat(s.penalized(LOGITS)).containsExactly(1f, 2f, 2f, 2.25f, -1f); // 1 used twice: 3 - 0.5 - 2 x 0.25
    }

    @Test
    void repetitionPenaltyDividesPositiveAndMultipliesNegativeLogitsOfPromptAndGeneratedTokens() {
        Sampler s = new Sampler(0f, 1f, 0, 1, 0f, 0f, 2f, new int[] {3, 4});
        assertThat(s.penalized(LOGITS)).containsExactly(1f, 3f, 2f, 1.5f, -2f);
        assertThat(s.sample(LOGITS)).isEqualTo(1);
        assertThat(s.penalized(LOGITS)).containsExactly(1f, 1.5f, 2f, 1.5f, -2f);
        assertThat(s.sample(LOGITS)).isEqualTo(2);
        // off by default: the same array comes back
        Sampler plain = new Sampler(0f, 1f, 0, 1);
        plain.sample(LOGITS);
        assertThat(plain.penalized(LOGITS)).isSameAs(LOGITS);
    }

    @Test
    void logprobIsTheLogSoftmaxWithTheMostLikelyTokensFirst() {
        double z = Math.log(Math.exp(1) + 2 * Math.exp(3) + Math.exp(2) + Math.exp(-1));
        var lp = Sampler.logprob(LOGITS, 2, 3);
        assertThat(lp.getTokenId()).isEqualTo(2);
        assertThat((double) lp.getLogprob()).isCloseTo(2 - z, org.assertj.core.data.Offset.offset(1e-6));
        assertThat(lp.getTopList()).extracting(t -> t.getTokenId()).containsExactly(1, 3, 2);
        assertThat((double) lp.getTop(0).getLogprob()).isCloseTo(3 - z, org.assertj.core.data.Offset.offset(1e-6));
        assertThat(Sampler.logprob(LOGITS, 4, 0).getTopList()).isEmpty();
    }

    @Test
    void penaltiesAndTopLogprobsAreValidated() {
        assertThat(Sampler.validate(SamplingParams.newBuilder().setPresencePenalty(2.5f).build())).contains("presence_penalty");
        assertThat(Sampler.validate(SamplingParams.newBuilder().setFrequencyPenalty(-3f).build())).contains("frequency_penalty");
        assertThat(Sampler.validate(SamplingParams.newBuilder().setRepetitionPenalty(0f).build())).contains("repetition_penalty");
        assertThat(Sampler.validate(SamplingParams.newBuilder().setLogprobs(true).setTopLogprobs(21).build())).contains("top_logprobs");
        assertThat(Sampler.validate(SamplingParams.newBuilder().setPresencePenalty(-2f).setFrequencyPenalty(2f)
                .setRepetitionPenalty(1.3f).setLogprobs(true).setTopLogprobs(20).build())).isNull();
    }
}
