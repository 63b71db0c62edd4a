package dev.moecluster.coordinator;

import static dev.moecluster.coordinator.PlacementChecks.assertDiffMatches;
import static dev.moecluster.coordinator.PlacementChecks.assertValid;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.moecluster.coordinator.PlacementPlan.Decision;
import dev.moecluster.core.placement.ExpertPlacement;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.TreeMap;
import java.util.stream.IntStream;
import net.jqwik.api.Arbitraries;
import net.jqwik.api.Arbitrary;
import net.jqwik.api.Assume;
import net.jqwik.api.Combinators;
import net.jqwik.api.ForAll;
import net.jqwik.api.Property;
import net.jqwik.api.Provide;
import net.jqwik.api.constraints.DoubleRange;
import net.jqwik.api.constraints.LongRange;

class PlacementPlannerPropertiesTest {

    /**
     * A random cluster: a small model, workers with uneven memory (sometimes too little), some
     * draining, a heavy-tailed load with idle experts, and a policy.
     */
    record Cluster(ModelShape shape, List<WorkerCapacity> workers, ExpertLoad load, PlacementPolicy policy,
            long seed) {

        static Cluster random(int layers, int experts, int workerCount, int minReplicas, double threshold, long seed) {
            Random random = new Random(seed);
            long bytes = 1_000 + random.nextInt(1_000);
            ModelShape shape = new ModelShape(IntStream.range(0, layers).map(l -> 2 * l + 1).boxed().toList(), experts,
                    bytes);
            int total = layers * experts;
            int fair = (int) Math.ceil((double) minReplicas * total / workerCount);
            List<WorkerCapacity> workers = new ArrayList<>();
            for (int w = 0; w < workerCount; w++) {
                int slots = Math.max(0, fair - 1 + random.nextInt(fair + 3));
                long memory = slots * bytes + random.nextLong(bytes);
                workers.add(new WorkerCapacity("w" + w + ":70" + w, memory, random.nextInt(10) == 0));
            }
            return new Cluster(shape, workers, load(shape, random), new PlacementPolicy(minReplicas, threshold,
                    0.8 + 0.2 * random.nextDouble()), seed);
        }

        static ExpertLoad load(ModelShape shape, Random random) {
            Map<Integer, long[]> tokens = new TreeMap<>();
            for (int layer : shape.moeLayers()) {
                long[] t = new long[shape.numExperts()];
                for (int e = 0; e < t.length; e++) {
                    t[e] = random.nextInt(5) == 0 ? 0 : (long) (100 * Math.pow(1 - random.nextDouble(), -1.5));
                }
                tokens.put(layer, t);
            }
            return new ExpertLoad(tokens);
        }

        /** The Gale–Ryser condition: every expert can get the minimum replicas on distinct workers. */
        boolean feasible() {
            long capacity = 0;
            int eligible = 0;
            for (WorkerCapacity w : workers) {
                if (!w.draining()) {
                    long slots = Math.min(w.memoryBytes() / shape.bytesPerExpert(), shape.totalExperts());
                    capacity += slots;
                    eligible += slots > 0 ? 1 : 0;
                }
            }
            return eligible >= policy.minReplicas()
                    && capacity >= (long) policy.minReplicas() * shape.totalExperts();
        }

        PlacementPlanner planner() {
            return new PlacementPlanner(policy);
        }

        Cluster withLoad(ExpertLoad other) {
            return new Cluster(shape, workers, other, policy, seed);
        }

        Cluster withWorkers(List<WorkerCapacity> other) {
            return new Cluster(shape, other, load, policy, seed);
        }
    }

    @Provide
    Arbitrary<Cluster> clusters() {
        return Combinators.combine(
                        Arbitraries.integers().between(1, 3),
                        Arbitraries.integers().between(1, 12),
                        Arbitraries.integers().between(1, 10),
                        Arbitraries.integers().between(1, 3),
                        Arbitraries.of(0.0, 0.02, 0.05, 0.2),
                        Arbitraries.longs())
                .as(Cluster::random);
    }

    @Property(tries = 300)
    void plansWheneverTheMinimumFitsAndOtherwiseNamesTheShortfall(@ForAll("clusters") Cluster c) {
        if (c.feasible()) {
            PlacementPlan plan = c.planner().plan(c.shape(), c.workers(), c.load());
            assertValid(plan, c.shape(), c.workers(), c.policy().minReplicas());
        } else {
            assertThatThrownBy(() -> c.planner().plan(c.shape(), c.workers(), c.load()))
                    .isInstanceOf(InfeasiblePlacementException.class)
                    .hasMessageContaining("short by");
        }
    }

    @Property(tries = 200)
    void everyExpertKeepsMinReplicasOnDistinctWorkersWithinMemoryAcrossEvents(@ForAll("clusters") Cluster c,
            @ForAll @LongRange(min = 0, max = 1_000_000) long event) {
        Assume.that(c.feasible());
        ExpertPlacement current = c.planner().plan(c.shape(), c.workers(), c.load()).placement();
        Cluster next = perturb(c, new Random(event));
        Assume.that(next.feasible());

        PlacementPlan plan = next.planner().plan(next.shape(), next.workers(), next.load(), current);

        assertValid(plan, next.shape(), next.workers(), next.policy().minReplicas());
        assertDiffMatches(plan, current, next.workers());
        if (plan.changed()) {
            assertThat(plan.placement().epoch()).isEqualTo(current.epoch() + 1);
        } else {
            assertThat(plan.placement()).isSameAs(current);
        }
    }

    @Property(tries = 200)
    void samePlanForTheSameInput(@ForAll("clusters") Cluster c, @ForAll @LongRange(min = 0, max = 1_000_000) long event) {
        Assume.that(c.feasible());
        PlacementPlan first = c.planner().plan(c.shape(), c.workers(), c.load());
        PlacementPlan again = new PlacementPlanner(c.policy()).plan(c.shape(), List.copyOf(c.workers()),
                new ExpertLoad(c.load().tokensByLayer()));
        assertThat(again).isEqualTo(first);

        Cluster next = perturb(c, new Random(event));
        Assume.that(next.feasible());
        PlacementPlan replan = next.planner().plan(next.shape(), next.workers(), next.load(), first.placement());
        PlacementPlan replanAgain = next.planner().plan(next.shape(), next.workers(), next.load(), first.placement());
        assertThat(replanAgain).isEqualTo(replan);
    }

    @Property(tries = 200)
    void balancednessNeverWorseThanTheInputPlacement(@ForAll("clusters") Cluster c,
            @ForAll @LongRange(min = 0, max = 1_000_000) long seed) {
        Assume.that(c.feasible());
        // A valid input placement for these workers, planned for a different load.
        Cluster earlier = c.withLoad(Cluster.load(c.shape(), new Random(seed)));
        ExpertPlacement current = earlier.planner().plan(c.shape(), c.workers(), earlier.load()).placement();

        PlacementPlan plan = c.planner().plan(c.shape(), c.workers(), c.load(), current);

        if (c.workers().stream().allMatch(w -> !w.draining() && w.memoryBytes() >= c.shape().bytesPerExpert())) {
            assertThat(plan.balancednessBefore()).isCloseTo(PlacementPlanner.balancedness(current, c.load()),
                    org.assertj.core.data.Offset.offset(1e-9));
        }
        assertThat(plan.balancednessAfter()).isGreaterThanOrEqualTo(plan.balancednessBefore() - 1e-12);
        if (plan.changed()) {
            assertThat(plan.decision()).isEqualTo(Decision.REBALANCE);
            assertThat(plan.balancednessAfter() - plan.balancednessBefore())
                    .as("a move must buy more than the threshold")
                    .isGreaterThan(c.policy().migrationThreshold());
        }
    }

    @Property(tries = 30)
    void zipfLoadIsBalancedWithAFewRedundantExperts(@ForAll @DoubleRange(min = 1.0, max = 1.2) double s,
            @ForAll @LongRange(min = 0, max = 1_000_000) long seed) {
        // 4 layers × 64 experts on 16 workers with room for 25% more copies than one of each.
        ModelShape shape = new ModelShape(List.of(0, 1, 2, 3), 64, 1 << 20);
        List<WorkerCapacity> workers = PlacementChecks.workers(16, 20L << 20);
        ExpertLoad load = PlacementChecks.zipf(shape, s, seed);
        ExpertPlacement roundRobin = ExpertPlacement.roundRobin(
                workers.stream().map(WorkerCapacity::id).toList(), shape.moeLayers(), 64, 1);

        PlacementPlan plan = new PlacementPlanner(PlacementPolicy.defaults()).plan(shape, workers, load);

        assertValid(plan, shape, workers, 1);
        assertThat(PlacementPlanner.balancedness(roundRobin, load)).isLessThan(0.9);
        assertThat(plan.balancednessAfter()).isGreaterThanOrEqualTo(0.9);
        assertThat(PlacementChecks.redundantCopies(plan.placement(), 1))
                .as("redundant copies")
                .isBetween(0, 32);
    }

    /** The next input: a worker dies, drains, joins or shrinks, the load changes, or nothing happens. */
    static Cluster perturb(Cluster c, Random random) {
        List<WorkerCapacity> workers = new ArrayList<>(c.workers());
        int pick = random.nextInt(workers.size());
        return switch (random.nextInt(6)) {
            case 0 -> {
                workers.remove(pick);
                yield c.withWorkers(workers);
            }
            case 1 -> {
                workers.set(pick, workers.get(pick).withDraining(true));
                yield c.withWorkers(workers);
            }
            case 2 -> {
                workers.add(WorkerCapacity.of("joined:7000",
                        c.shape().bytesPerExpert() * (1 + random.nextInt(c.shape().totalExperts()))));
                yield c.withWorkers(workers);
            }
            case 3 -> {
                WorkerCapacity w = workers.get(pick);
                workers.set(pick, w.withMemoryBytes(w.memoryBytes() / 2));
                yield c.withWorkers(workers);
            }
            case 4 -> c.withLoad(Cluster.load(c.shape(), random));
            default -> c;
        };
    }
}
