package dev.moecluster.coordinator;

import static org.assertj.core.api.Assertions.assertThat;

import dev.moecluster.core.placement.ExpertPlacement;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.TreeSet;

/** Assertions every plan must pass, and helpers shared by the planner tests. */
final class PlacementChecks {
    private PlacementChecks() {}

    /** Every expert has at least {@code minReplicas} copies on distinct live, non-draining workers within memory. */
    static void assertValid(PlacementPlan plan, ModelShape shape, List<WorkerCapacity> workers, int minReplicas) {
        ExpertPlacement placement = plan.placement();
        Map<String, WorkerCapacity> byId = new HashMap<>();
        workers.forEach(w -> byId.put(w.id(), w));
        Map<String, Integer> copies = new TreeMap<>();
        for (int layer : shape.moeLayers()) {
            for (int e = 0; e < shape.numExperts(); e++) {
                int[] replicas = placement.replicas(layer, e);
                Set<String> holders = new TreeSet<>();
                for (int w : replicas) {
                    String id = placement.workers().get(w);
                    assertThat(byId).as("holder of L%d/E%d", layer, e).containsKey(id);
                    assertThat(byId.get(id).draining()).as("%s holds L%d/E%d while draining", id, layer, e).isFalse();
                    holders.add(id);
                    copies.merge(id, 1, Integer::sum);
                }
                assertThat(holders).as("distinct holders of L%d/E%d", layer, e).hasSize(replicas.length);
                assertThat(replicas.length).as("replicas of L%d/E%d", layer, e).isGreaterThanOrEqualTo(minReplicas);
            }
        }
        copies.forEach((id, n) -> assertThat(n * shape.bytesPerExpert())
                .as("bytes on %s", id)
                .isLessThanOrEqualTo(byId.get(id).memoryBytes()));
    }

    /** Applying the plan's loads and unloads to {@code current} gives the new placement, on live workers. */
    static void assertDiffMatches(PlacementPlan plan, ExpertPlacement current, List<WorkerCapacity> workers) {
        Set<String> live = new TreeSet<>();
        workers.forEach(w -> live.add(w.id()));
        Set<ExpertCopy> was = copies(current, live);
        Set<ExpertCopy> now = copies(plan.placement(), live);
        Set<ExpertCopy> applied = new TreeSet<>(PlacementChecks::compare);
        applied.addAll(was);
        assertThat(was).as("unloads are copies that existed").containsAll(plan.unloads());
        assertThat(now).as("loads are copies that exist now").containsAll(plan.loads());
        applied.removeAll(plan.unloads());
        applied.addAll(plan.loads());
        assertThat(applied).isEqualTo(now);
    }

    static Set<ExpertCopy> copies(ExpertPlacement placement, Set<String> live) {
        Set<ExpertCopy> out = new TreeSet<>(PlacementChecks::compare);
        if (placement == null) {
            return out;
        }
        placement.layers().forEach((layer, experts) -> {
            for (int e = 0; e < experts.length; e++) {
                for (int w : experts[e]) {
                    String id = placement.workers().get(w);
                    if (live.contains(id)) {
                        out.add(new ExpertCopy(id, layer, e));
                    }
                }
            }
        });
        return out;
    }

    private static int compare(ExpertCopy a, ExpertCopy b) {
        int c = a.worker().compareTo(b.worker());
        if (c != 0) {
            return c;
        }
        c = Integer.compare(a.layer(), b.layer());
        return c != 0 ? c : Integer.compare(a.expert(), b.expert());
    }

    /** Copies held per worker id. */
    static Map<String, Integer> copiesPerWorker(ExpertPlacement placement) {
        Map<String, Integer> out = new TreeMap<>();
        placement.workers().forEach(id -> out.put(id, 0));
        placement.layers().forEach((layer, experts) -> {
            for (int[] replicas : experts) {
                for (int w : replicas) {
                    out.merge(placement.workers().get(w), 1, Integer::sum);
                }
            }
        });
        return out;
    }

    /** Copies of all experts beyond one per expert. */
    static int redundantCopies(ExpertPlacement placement, int minReplicas) {
        int total = copiesPerWorker(placement).values().stream().mapToInt(Integer::intValue).sum();
        int experts = placement.layers().values().stream().mapToInt(es -> es.length).sum();
        return total - experts * minReplicas;
    }

    static List<WorkerCapacity> workers(int n, long memoryBytes) {
        return java.util.stream.IntStream.range(0, n)
                .mapToObj(i -> WorkerCapacity.of(String.format("w%02d:7001", i), memoryBytes))
                .toList();
    }

    /** Zipf-distributed load per layer over a random ranking of the experts. */
    static ExpertLoad zipf(ModelShape shape, double s, long seed) {
        return PlannerSimulation.zipfLoad(shape, s, s, new java.util.Random(seed));
    }
}
