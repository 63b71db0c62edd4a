package dev.moecluster.worker;

import static java.util.Objects.requireNonNull;

import dev.moecluster.core.moe.ExpertWeights;
import dev.moecluster.core.tensor.RowBatch;
import java.util.ArrayList;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Map;

/**
 * One coalesced round of a worker: every (expert, rows) slice the compute thread took at once, each
 * with its input rows in the wire dtype (views of the received messages) and the buffer its outputs
 * go to (views of the results being built). Slices of the same expert may come from different
 * batches; a backend computes each expert once per round.
 */
public record Round(List<Slice> slices) {
    /** Rows of one expert: {@code output} receives {@code expert(input)} in {@code output}'s dtype. */
    public record Slice(ExpertWeights expert, RowBatch input, RowBatch output) {
        public Slice {
            requireNonNull(expert, "expert is null");
            requireNonNull(input, "input is null");
            requireNonNull(output, "output is null");
            if (input.rows() != output.rows() || input.width() != expert.hiddenSize()
                    || output.width() != expert.hiddenSize()) {
                throw new IllegalArgumentException("slice " + input + " -> " + output + " does not fit an expert of hidden size "
                        + expert.hiddenSize());
            }
        }
    }

    public Round {
        slices = List.copyOf(slices);
    }

    /** Rows of the whole round. */
    public long rows() {
        long n = 0;
        for (Slice s : slices) {
            n += s.input().rows();
        }
        return n;
    }

    /** The slices grouped by expert, experts in order of first appearance, slices in round order. */
    public List<List<Slice>> byExpert() {
        Map<ExpertWeights, List<Slice>> groups = new IdentityHashMap<>();
        List<List<Slice>> ordered = new ArrayList<>();
        for (Slice s : slices) {
            List<Slice> g = groups.get(s.expert());
            if (g == null) {
                g = new ArrayList<>();
                groups.put(s.expert(), g);
                ordered.add(g);
            }
            g.add(s);
        }
        return ordered;
    }
}
