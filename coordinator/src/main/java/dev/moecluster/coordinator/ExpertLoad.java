package dev.moecluster.coordinator;

import static java.util.Objects.requireNonNull;

import java.util.Arrays;
import java.util.Collections;
import java.util.Map;
import java.util.TreeMap;

/**
 * Tokens routed to each expert over the recent window, by MoE layer: the load the planner balances.
 * A layer that is absent carries no load.
 *
 * @param tokensByLayer MoE layer index → tokens per expert
 */
public record ExpertLoad(Map<Integer, long[]> tokensByLayer) {
    public ExpertLoad {
        requireNonNull(tokensByLayer, "tokensByLayer is null");
        Map<Integer, long[]> copy = new TreeMap<>();
        tokensByLayer.forEach((layer, tokens) -> {
            requireNonNull(layer, "layer is null");
            requireNonNull(tokens, "tokens of layer " + layer + " is null");
            for (int e = 0; e < tokens.length; e++) {
                if (tokens[e] < 0) {
                    throw new IllegalArgumentException("expert " + e + " of layer " + layer + " has negative load "
                            + tokens[e]);
                }
            }
            copy.put(layer, tokens.clone());
        });
        tokensByLayer = Collections.unmodifiableMap(copy);
    }

    /** No load yet: the planner then spreads experts evenly by count. */
    public static ExpertLoad none() {
        return new ExpertLoad(Map.of());
    }

    /** Tokens routed to one expert; 0 when the layer or expert is not reported. */
    public long tokens(int layer, int expert) {
        long[] tokens = tokensByLayer.get(layer);
        return tokens == null || expert < 0 || expert >= tokens.length ? 0 : tokens[expert];
    }

    @Override
    public Map<Integer, long[]> tokensByLayer() {
        Map<Integer, long[]> copy = new TreeMap<>();
        tokensByLayer.forEach((layer, tokens) -> copy.put(layer, tokens.clone()));
        return Collections.unmodifiableMap(copy);
    }

    @Override
    public boolean equals(Object o) {
        if (!(o instanceof ExpertLoad other) || !other.tokensByLayer.keySet().equals(tokensByLayer.keySet())) {
            return false;
        }
        return tokensByLayer.keySet().stream()
                .allMatch(l -> Arrays.equals(tokensByLayer.get(l), other.tokensByLayer.get(l)));
    }

    @Override
    public int hashCode() {
        int h = 1;
        for (Map.Entry<Integer, long[]> entry : tokensByLayer.entrySet()) {
            h = 31 * h + entry.getKey() * 17 + Arrays.hashCode(entry.getValue());
        }
        return h;
    }

    @Override
    public String toString() {
        StringBuilder s = new StringBuilder("ExpertLoad{");
        tokensByLayer.forEach((layer, tokens) -> s.append(layer).append('=').append(Arrays.toString(tokens)).append(' '));
        return s.append('}').toString();
    }
}
