package dev.moecluster.router.generate;

import dev.moecluster.proto.SamplingParams;
import dev.moecluster.proto.TokenLogprob;
import dev.moecluster.proto.TopLogprob;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.PriorityQueue;
import java.util.Set;
import java.util.SplittableRandom;

/**
 * Picks the next token from logits: penalties for tokens already seen first (presence and frequency on
 * generated tokens, repetition on prompt and generated tokens, as vLLM applies them), then greedy at
 * temperature 0, otherwise softmax at the temperature restricted to the top-k tokens and then to the
 * smallest set whose mass reaches top-p. One random stream per request, seeded, so the same seed
 * reproduces the same tokens. One sampler per sequence: it remembers what it generated.
 */
public final class Sampler {
    public static final int DEFAULT_MAX_TOKENS = 128;
    /** Most alternatives {@code top_logprobs} may ask for (vLLM's default limit). */
    public static final int MAX_TOP_LOGPROBS = 20;

    private final float temperature;
    private final float topP;
    private final int topK;
    private final SplittableRandom random;
    private final float presence;
    private final float frequency;
    private final float repetition;
    /** How often each token was generated; with {@link #seen}, only kept when a penalty is on. */
    private final Map<Integer, Integer> generated = new HashMap<>();
    private final Set<Integer> seen = new HashSet<>();

    public Sampler(float temperature, float topP, int topK, long seed) {
        this(temperature, topP, topK, seed, 0f, 0f, 1f, new int[0]);
    }

    /**
     * @param presence subtracted once from the logit of every token generated so far
     * @param frequency subtracted from it per occurrence
     * @param repetition divides positive, multiplies negative logits of tokens in {@code prompt} or generated; 1 is off
     */
    public Sampler(float temperature, float topP, int topK, long seed, float presence, float frequency, float repetition,
            int[] prompt) {
        this.temperature = temperature;
        this.topP = topP;
        this.topK = topK;
        this.random = new SplittableRandom(seed);
        this.presence = presence;
        this.frequency = frequency;
        this.repetition = repetition;
        if (repetition != 1f) {
            for (int t : prompt) {
                seen.add(t);
            }
        }
    }

    /** A sampler for validated request parameters; an unset seed draws a random one. */
    public static Sampler of(SamplingParams p) {
        return of(p, new int[0]);
    }

    /** A sampler for validated request parameters and the prompt they continue. */
    public static Sampler of(SamplingParams p, int[] prompt) {
        return new Sampler(p.hasTemperature() ? p.getTemperature() : 1f, p.hasTopP() ? p.getTopP() : 1f, p.getTopK(),
                p.hasSeed() ? p.getSeed() : new SplittableRandom().nextLong(), p.getPresencePenalty(),
                p.getFrequencyPenalty(), p.hasRepetitionPenalty() ? p.getRepetitionPenalty() : 1f, prompt);
    }

    private boolean penalizes() {
        return presence != 0f || frequency != 0f || repetition != 1f;
    }

    /** The logits after the penalties for what this sequence has seen; the same array when none is on. */
    float[] penalized(float[] logits) {
        if (!penalizes() || (generated.isEmpty() && seen.isEmpty())) {
            return logits;
        }
        float[] out = logits.clone();
        if (repetition != 1f) {
            for (int t : seen) {
                out[t] = out[t] > 0 ? out[t] / repetition : out[t] * repetition;
            }
        }
        for (Map.Entry<Integer, Integer> e : generated.entrySet()) {
            out[e.getKey()] -= frequency * e.getValue() + presence;
        }
        return out;
    }

    /**
     * The log-probability of {@code token} under {@code logits} (log-softmax, before penalties and
     * temperature) and the {@code top} most likely tokens with theirs, most likely first.
     */
    public static TokenLogprob logprob(float[] logits, int token, int top) {
        double max = Double.NEGATIVE_INFINITY;
        for (float x : logits) {
            max = Math.max(max, x);
        }
        double sum = 0;
        for (float x : logits) {
            sum += Math.exp(x - max);
        }
        double logZ = max + Math.log(sum);
        TokenLogprob.Builder b = TokenLogprob.newBuilder().setTokenId(token).setLogprob((float) (logits[token] - logZ));
        if (top > 0) {
            // a min-heap of the best `top` so far; ties go to the lower id, as a stable sort would
            PriorityQueue<Integer> best = new PriorityQueue<>(top + 1, (x, y) -> logits[x] != logits[y]
                    ? Float.compare(logits[x], logits[y]) : Integer.compare(y, x));
            for (int i = 0; i < logits.length; i++) {
                best.add(i);
                if (best.size() > top) {
                    best.poll();
                }
            }
            List<Integer> order = new ArrayList<>(best);
            order.sort((x, y) -> logits[x] != logits[y] ? Float.compare(logits[y], logits[x]) : Integer.compare(x, y));
            for (int i : order) {
                b.addTop(TopLogprob.newBuilder().setTokenId(i).setLogprob((float) (logits[i] - logZ)));
            }
        }
        return b.build();
    }

    /** The first problem with the parameters, or null when they are valid. */
    public static String validate(SamplingParams p) {
        if (p.hasMaxTokens() && p.getMaxTokens() <= 0) {
            return "max_tokens must be positive, got " + p.getMaxTokens();
        }
        if (p.hasTemperature() && !(p.getTemperature() >= 0f && Float.isFinite(p.getTemperature()))) {
            return "temperature must be a finite number >= 0, got " + p.getTemperature();
        }
        if (p.hasTopP() && !(p.getTopP() > 0f && p.getTopP() <= 1f)) {
            return "top_p must be in (0, 1], got " + p.getTopP();
        }
        if (p.getTopK() < 0) {
            return "top_k must be >= 0, got " + p.getTopK();
        }
        for (String s : p.getStopList()) {
            if (s.isEmpty()) {
                return "stop strings must not be empty";
            }
        }
        if (p.hasPresencePenalty() && !(p.getPresencePenalty() >= -2f && p.getPresencePenalty() <= 2f)) {
            return "presence_penalty must be in [-2, 2], got " + p.getPresencePenalty();
        }
        if (p.hasFrequencyPenalty() && !(p.getFrequencyPenalty() >= -2f && p.getFrequencyPenalty() <= 2f)) {
            return "frequency_penalty must be in [-2, 2], got " + p.getFrequencyPenalty();
        }
        if (p.hasRepetitionPenalty() && !(p.getRepetitionPenalty() > 0f && Float.isFinite(p.getRepetitionPenalty()))) {
            return "repetition_penalty must be a finite number > 0, got " + p.getRepetitionPenalty();
        }
        if (p.getTopLogprobs() < 0 || p.getTopLogprobs() > MAX_TOP_LOGPROBS) {
            return "top_logprobs must be between 0 and " + MAX_TOP_LOGPROBS + ", got " + p.getTopLogprobs();
        }
        return null;
    }

    /** The next token for {@code logits} (the model's, unpenalized); remembered for the penalties of the next ones. */
    public int sample(float[] logits) {
        int token = choose(penalized(logits));
        if (penalizes()) {
            generated.merge(token, 1, Integer::sum);
            if (repetition != 1f) {
                seen.add(token);
            }
        }
        return token;
    }

    private int choose(float[] logits) {
        if (temperature == 0f) {
            return argmax(logits);
        }
        int n = logits.length;
        Integer[] order = new Integer[n];
        for (int i = 0; i < n; i++) {
            order[i] = i;
        }
        Arrays.sort(order, (a, b) -> logits[b] != logits[a] ? Float.compare(logits[b], logits[a]) : Integer.compare(a, b));
        int keep = topK > 0 ? Math.min(topK, n) : n;
        double max = logits[order[0]] / temperature;
        double[] p = new double[keep];
        double sum = 0;
        for (int i = 0; i < keep; i++) {
            p[i] = Math.exp(logits[order[i]] / temperature - max);
            sum += p[i];
        }
        double mass = 0;
        int cut = keep;
        for (int i = 0; i < keep; i++) {
            mass += p[i] / sum;
            if (mass >= topP) {
                cut = i + 1;
                break;
            }
        }
        double total = 0;
        for (int i = 0; i < cut; i++) {
            total += p[i];
        }
        double r = random.nextDouble() * total;
        for (int i = 0; i < cut; i++) {
            r -= p[i];
            if (r <= 0) {
                return order[i];
            }
        }
        return order[cut - 1];
    }

    public static int argmax(float[] logits) {
        int best = 0;
        for (int i = 1; i < logits.length; i++) {
            if (logits[i] > logits[best]) {
                best = i;
            }
        }
        return best;
    }
}
