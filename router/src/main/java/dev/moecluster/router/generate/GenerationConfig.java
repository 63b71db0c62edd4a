package dev.moecluster.router.generate;

/**
 * How the router schedules generation.
 *
 * @param maxActiveSequences sequences decoding together in one step (continuous batching width)
 * @param maxQueuedRequests requests waiting for a slot before new ones get RESOURCE_EXHAUSTED
 * @param kvCacheBudgetBytes KV-cache memory, cut into the bf16 blocks of one pool that sequences reserve
 *     (prompt + max_tokens each, rounded up to whole blocks)
 * @param prefillTokensPerStep prompt tokens prefilled per step across sequences, so long prompts are
 *     prefilled in chunks and running decodes are not starved
 * @param overlap split each step into two micro-batches that run concurrently, so one is at the
 *     experts while the other computes attention (ping-pong)
 */
public record GenerationConfig(int maxActiveSequences, int maxQueuedRequests, long kvCacheBudgetBytes,
        int prefillTokensPerStep, boolean overlap) {
    public GenerationConfig {
        if (maxActiveSequences < 1 || maxQueuedRequests < 0 || kvCacheBudgetBytes < 1 || prefillTokensPerStep < 1) {
            throw new IllegalArgumentException("generation limits must be positive: active " + maxActiveSequences
                    + ", queued " + maxQueuedRequests + ", KV budget " + kvCacheBudgetBytes + ", prefill/step " + prefillTokensPerStep);
        }
    }

    /** 64 sequences, 256 queued, 2 GiB of KV cache, 256 prefill tokens per step, overlap on. */
    public static GenerationConfig defaults() {
        return new GenerationConfig(64, 256, 2L << 30, 256, true);
    }

    public GenerationConfig withOverlap(boolean on) {
        return new GenerationConfig(maxActiveSequences, maxQueuedRequests, kvCacheBudgetBytes, prefillTokensPerStep, on);
    }

    public GenerationConfig withKvCacheBudgetBytes(long bytes) {
        return new GenerationConfig(maxActiveSequences, maxQueuedRequests, bytes, prefillTokensPerStep, overlap);
    }

    public GenerationConfig withMaxQueuedRequests(int n) {
        return new GenerationConfig(maxActiveSequences, n, kvCacheBudgetBytes, prefillTokensPerStep, overlap);
    }

    public GenerationConfig withMaxActiveSequences(int n) {
        return new GenerationConfig(n, maxQueuedRequests, kvCacheBudgetBytes, prefillTokensPerStep, overlap);
    }

    public GenerationConfig withPrefillTokensPerStep(int n) {
        return new GenerationConfig(maxActiveSequences, maxQueuedRequests, kvCacheBudgetBytes, n, overlap);
    }
}
