package dev.moecluster.router.generate;

import dev.moecluster.proto.SamplingParams;
import java.util.Arrays;
import java.util.SplittableRandom;

/**
 * Picks the next token from logits: greedy at temperature 0, otherwise softmax at the temperature
 * restricted to the top-k tokens and then to the smallest set whose mass reaches top-p. One random
 * stream per request, seeded, so the same seed reproduces the same tokens.
 */
public final class Sampler {
    public static final int DEFAULT_MAX_TOKENS = 128;

    private final float temperature;
    private final float topP;
    private final int topK;
    private final SplittableRandom random;

    public Sampler(float temperature, float topP, int topK, long seed) {
        this.temperature = temperature;
        this.topP = topP;
        this.topK = topK;
        this.random = new SplittableRandom(seed);
    }

    /** A sampler for validated request parameters; an unset seed draws a random one. */
    public static Sampler of(SamplingParams p) {
        return new Sampler(p.hasTemperature() ? p.getTemperature() : 1f, p.hasTopP() ? p.getTopP() : 1f, p.getTopK(),
                p.hasSeed() ? p.getSeed() : new SplittableRandom().nextLong());
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
        return null;
    }

    public int sample(float[] logits) {
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
