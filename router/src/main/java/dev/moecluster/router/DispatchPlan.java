package dev.moecluster.router;

import dev.moecluster.core.moe.GateResult;
import dev.moecluster.core.placement.ExpertPlacement;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;

/**
 * Which rows of one MoE-layer call go to which worker: a pure value computed from the gate's
 * choices, the placement and a snapshot of the workers' load and health, with no transport in it.
 * Each expert's rows go to one of its replicas: a healthy one before an unhealthy one, then the one
 * expected to answer first (its observed latency, scaled by the rows queued there, this plan's
 * included), then the one with the fewest outstanding rows.
 *
 * @param layer the MoE layer
 * @param shares one entry per worker that gets rows, in the order they were first chosen
 */
record DispatchPlan(int layer, List<WorkerShare> shares) {
    /** The rows of one expert in this call: indices into the gate result's (token, slot) pairs. */
    record ExpertRows(int expert, int[] slots) {}

    /** What one worker gets: its index in the placement, its address, and its experts' rows. */
    record WorkerShare(int worker, String address, List<ExpertRows> experts) {
        int rows() {
            int n = 0;
            for (ExpertRows e : experts) {
                n += e.slots().length;
            }
            return n;
        }
    }

    /** A snapshot of one worker as the dispatcher sees it. */
    interface WorkerView {
        long outstandingRows(String address);

        boolean healthy(String address);

        /** When {@code rows} more rows sent now would come back, {@code rowsAhead} rows being queued there; 0 when unknown. */
        default long expectedNanos(String address, long rowsAhead, long rows) {
            return 0;
        }
    }

    DispatchPlan {
        shares = List.copyOf(shares);
    }

    /** The gate's (token, slot) pairs grouped by expert, experts in ascending order. */
    static List<ExpertRows> groupByExpert(GateResult gate) {
        int[] experts = gate.experts();
        Map<Integer, List<Integer>> slots = new TreeMap<>();
        for (int i = 0; i < experts.length; i++) {
            slots.computeIfAbsent(experts[i], e -> new ArrayList<>()).add(i);
        }
        List<ExpertRows> groups = new ArrayList<>(slots.size());
        slots.forEach((e, list) -> groups.add(new ExpertRows(e, list.stream().mapToInt(Integer::intValue).toArray())));
        return groups;
    }

    /**
     * Plans {@code todo} over the placement's replicas, avoiding {@code excluded} workers (those
     * that failed earlier in this call).
     *
     * @throws StatusRuntimeException UNAVAILABLE naming the expert when it has no replica left;
     *     {@code lastError} says what each replica answered
     */
    static DispatchPlan of(ExpertPlacement placement, int layer, List<ExpertRows> todo, Set<Integer> excluded,
            WorkerView workers, Map<Integer, String> lastError) {
        Map<Integer, List<ExpertRows>> byWorker = new LinkedHashMap<>();
        long[] planned = new long[placement.workers().size()];
        for (ExpertRows g : todo) {
            int best = -1;
            long bestLoad = Long.MAX_VALUE;
            long bestExpected = Long.MAX_VALUE;
            boolean bestHealthy = false;
            int[] replicas = placement.replicas(layer, g.expert());
            for (int w : replicas) {
                if (excluded.contains(w)) {
                    continue;
                }
                String address = placement.workers().get(w);
                long load = workers.outstandingRows(address) + planned[w];
                long expected = workers.expectedNanos(address, load, g.slots().length);
                boolean healthy = workers.healthy(address);
                boolean better = best < 0 || (healthy && !bestHealthy)
                        || (healthy == bestHealthy && (expected < bestExpected || (expected == bestExpected && load < bestLoad)));
                if (better) {
                    best = w;
                    bestLoad = load;
                    bestExpected = expected;
                    bestHealthy = healthy;
                }
            }
            if (best < 0) {
                throw unavailable(placement, layer, g.expert(), replicas, lastError);
            }
            planned[best] += g.slots().length;
            byWorker.computeIfAbsent(best, w -> new ArrayList<>()).add(g);
        }
        List<WorkerShare> shares = new ArrayList<>(byWorker.size());
        byWorker.forEach((w, experts) -> shares.add(new WorkerShare(w, placement.workers().get(w), experts)));
        return new DispatchPlan(layer, shares);
    }

    private static StatusRuntimeException unavailable(ExpertPlacement placement, int layer, int expert, int[] replicas,
            Map<Integer, String> lastError) {
        if (replicas.length == 0) {
            return Status.UNAVAILABLE.withDescription("expert " + expert + " of layer " + layer
                    + " is not placed on any worker" + (placement.workers().isEmpty()
                            ? " (no placement yet: waiting for the coordinator)" : "")).asRuntimeException();
        }
        StringBuilder why = new StringBuilder();
        for (int w : replicas) {
            why.append(why.isEmpty() ? "" : "; ").append(placement.workers().get(w)).append(": ")
                    .append(lastError.getOrDefault(w, "not tried"));
        }
        return Status.UNAVAILABLE.withDescription("expert " + expert + " of layer " + layer + " is unavailable: all "
                + replicas.length + " replica(s) failed (" + why + ")").asRuntimeException();
    }
}
