package dev.moecluster.core.runner;

import static java.util.Objects.requireNonNull;

/**
 * New tokens of one sequence for a forward step: a whole prompt, a piece of one (chunked prefill)
 * or the one token of a decode step. They take positions {@code cache.length()} onwards.
 */
public record SequenceChunk(KvCache cache, int[] tokens) {
    public SequenceChunk {
        requireNonNull(cache, "cache is null");
        requireNonNull(tokens, "tokens is null");
        if (tokens.length == 0) {
            throw new IllegalArgumentException("a sequence chunk needs at least one token");
        }
        tokens = tokens.clone();
    }

    @Override
    public int[] tokens() {
        return tokens.clone();
    }

    public int length() {
        return tokens.length;
    }

    int token(int i) {
        return tokens[i];
    }
}
