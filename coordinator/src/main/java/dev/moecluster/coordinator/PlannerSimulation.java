package dev.moecluster.coordinator;

import dev.moecluster.core.placement.ExpertPlacement;
import java.io.PrintStream;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Random;
import java.util.TreeMap;
import java.util.function.Supplier;
import java.util.stream.IntStream;

/**
 * Simulation benchmark of the placement planner (no workers, no network): a Qwen3-30B-A3B-shaped
 * model (48 MoE layers × 128 experts, 9 MiB per bf16 expert) under Zipf-skewed load, planned over
 * 16 to 1024 workers. Prints planner wall time and resulting balancedness, then the cost of the
 * events the coordinator plans for: a steady re-plan, a worker death, a load shift, a join and a
 * drain.
 *
 * <p>Run after {@code ./mvnw -pl proto,core,coordinator -DskipTests verify}: {@code java -cp
 * coordinator/target/classes:core/target/classes:<gson.jar> dev.moecluster.coordinator.PlannerSimulation
 * [workers,...] [runs]}, or {@code ... PlannerSimulation mixed [gpuMemoryRatio] [speedups,...]} (or
 * {@code moe bench planner}) for a
 * mixed GPU + CPU cluster ({@link #mixedCluster}). Results are recorded in {@code bench/RESULTS.md}.
 */
public final class PlannerSimulation {
    static final int LAYERS = 48;
    static final int EXPERTS = 128;
    static final long BYTES_PER_EXPERT = 3L * 2048 * 768 * 2;
    static final double MEMORY_HEADROOM = 1.25;

    private PlannerSimulation() {}

    public static void main(String[] args) {
        if (args.length > 0 && args[0].equals("mixed")) {
            double ratio = args.length > 1 ? Double.parseDouble(args[1]) : 2.0;
            double[] speedups = args.length > 2 ? Arrays.stream(args[2].split(",")).mapToDouble(Double::parseDouble).toArray()
                    : new double[] {5, 20, 50};
            mixedCluster(System.out, 4, 16, speedups, new int[] {1, 2}, ratio, 100_000, 42);
            return;
        }
        int[] workerCounts = args.length > 0
                ? Arrays.stream(args[0].split(",")).mapToInt(Integer::parseInt).toArray()
                : new int[] {16, 64, 256, 1024};
        int runs = args.length > 1 ? Integer.parseInt(args[1]) : 7;
        ModelShape shape = new ModelShape(IntStream.range(0, LAYERS).boxed().toList(), EXPERTS, BYTES_PER_EXPERT);
        ExpertLoad load = zipfLoad(shape, 1.0, 1.2, new Random(42));
        ExpertLoad shifted = shift(load, 0.25, new Random(7));

        System.out.printf(Locale.ROOT, "model %d layers × %d experts, %d bytes/expert; Zipf s ∈ [1.0, 1.2] per layer;"
                + " worker memory %.2f× its share of the minimum replicas; median of %d runs after 2 warm-ups%n%n",
                LAYERS, EXPERTS, BYTES_PER_EXPERT, MEMORY_HEADROOM, runs);
        System.out.println("| workers | min replicas | experts/worker (memory) | round-robin balancedness | planned balancedness"
                + " | redundant copies | first plan ms | plan ms (median) |");
        System.out.println("|---:|---:|---:|---:|---:|---:|---:|---:|");
        List<String> events = new ArrayList<>();
        for (int minReplicas : new int[] {1, 2}) {
            for (int n : workerCounts) {
                int slots = (int) Math.ceil(MEMORY_HEADROOM * minReplicas * shape.totalExperts() / n);
                List<WorkerCapacity> workers = IntStream.range(0, n)
                        .mapToObj(i -> WorkerCapacity.of(String.format(Locale.ROOT, "worker-%04d:7001", i),
                                slots * BYTES_PER_EXPERT))
                        .toList();
                PlacementPlanner planner = new PlacementPlanner(PlacementPolicy.defaults().withMinReplicas(minReplicas));
                List<String> ids = workers.stream().map(WorkerCapacity::id).toList();
                double roundRobin = PlacementPlanner.balancedness(
                        ExpertPlacement.roundRobin(ids, shape.moeLayers(), EXPERTS, minReplicas), load);

                Timed<PlacementPlan> initial = time(() -> planner.plan(shape, workers, load), runs);
                PlacementPlan plan = initial.value;
                int copies = plan.loads().size();
                System.out.printf(Locale.ROOT, "| %d | %d | %d | %.3f | %.3f | %d | %.1f | %.1f |%n", n, minReplicas, slots,
                        roundRobin, plan.balancednessAfter(), copies - minReplicas * shape.totalExperts(),
                        initial.firstMs, initial.medianMs);

                ExpertPlacement placed = plan.placement();
                events.add(event(n, minReplicas, "same load again", time(() -> planner.plan(shape, workers, load, placed), runs)));
                List<WorkerCapacity> survivors = workers.subList(1, n);
                if (survivors.size() >= minReplicas) {
                    events.add(event(n, minReplicas, "worker-0000 dies",
                            time(() -> planner.plan(shape, survivors, load, placed), runs)));
                }
                events.add(event(n, minReplicas, "load shifts (25% of layers re-ranked)",
                        time(() -> planner.plan(shape, workers, shifted, placed), runs)));
                List<WorkerCapacity> joined = new ArrayList<>(workers);
                joined.add(WorkerCapacity.of("worker-new:7001", slots * BYTES_PER_EXPERT));
                events.add(event(n, minReplicas, "a worker joins", time(() -> planner.plan(shape, joined, load, placed), runs)));
                List<WorkerCapacity> draining = new ArrayList<>(joined);
                draining.set(0, draining.get(0).withDraining(true));
                events.add(event(n, minReplicas, "worker-0000 drains (one joined)",
                        time(() -> planner.plan(shape, draining, load, placed), runs)));
            }
        }
        System.out.println();
        System.out.println("| workers | min replicas | event | decision | loads | unloads | balancedness before → after"
                + " | plan ms (median) |");
        System.out.println("|---:|---:|---|---|---:|---:|---|---:|");
        events.forEach(System.out::println);
    }

    /**
     * Plans the same model and Zipf load over a mixed cluster ({@code gpuWorkers} workers
     * {@code speedup}× as fast as {@code cpuWorkers} CPU workers, each GPU worker with
     * {@code gpuMemoryRatio}× a CPU worker's memory, 1.25× the minimum copies in all) three ways —
     * balancing time (speeds known), balancing rows (speeds unknown) and round-robin — and prints,
     * per plan, the busiest worker's compute time per step against the ideal (total rows / total
     * speed). No workers, no network: the planner alone.
     */
    public static void mixedCluster(PrintStream out, int gpuWorkers, int cpuWorkers, double[] speedups,
            int[] minReplicasList, double gpuMemoryRatio, double cpuRowsPerSecond, long seed) {
        ModelShape shape = new ModelShape(IntStream.range(0, LAYERS).boxed().toList(), EXPERTS, BYTES_PER_EXPERT);
        ExpertLoad load = zipfLoad(shape, 1.0, 1.2, new Random(seed));
        out.printf(Locale.ROOT, "model %d layers × %d experts, %d bytes/expert; Zipf s ∈ [1.0, 1.2] per layer, 10^6 tokens"
                + " per layer per step (seed %d); %d GPU + %d CPU workers, a GPU worker holds %.1f× a CPU worker's"
                + " experts, %.2f× the minimum copies in all; CPU worker %.0f rows/s%n%n", LAYERS, EXPERTS,
                BYTES_PER_EXPERT, seed, gpuWorkers, cpuWorkers, gpuMemoryRatio, MEMORY_HEADROOM, cpuRowsPerSecond);
        out.println("| GPU speed / CPU speed | min replicas | plan | busiest worker ms / step | ideal ms / step"
                + " | busiest / ideal | busiest / bound in memory | rows on GPU workers | GPU rows (ideal) | redundant copies"
                + " | plan ms |");
        out.println("|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        for (double speedup : speedups) {
            for (int minReplicas : minReplicasList) {
                int cpuSlots = (int) Math.ceil(MEMORY_HEADROOM * minReplicas * shape.totalExperts()
                        / (gpuMemoryRatio * gpuWorkers + cpuWorkers));
                int gpuSlots = (int) Math.floor(gpuMemoryRatio * cpuSlots);
                List<WorkerCapacity> workers = new ArrayList<>();
                for (int i = 0; i < gpuWorkers; i++) {
                    workers.add(new WorkerCapacity(String.format(Locale.ROOT, "gpu-%02d:7001", i),
                            gpuSlots * BYTES_PER_EXPERT, false, speedup * cpuRowsPerSecond));
                }
                for (int i = 0; i < cpuWorkers; i++) {
                    workers.add(new WorkerCapacity(String.format(Locale.ROOT, "cpu-%02d:7001", i),
                            cpuSlots * BYTES_PER_EXPERT, false, cpuRowsPerSecond));
                }
                double[] speeds = workers.stream().mapToDouble(WorkerCapacity::rowsPerSecond).toArray();
                List<WorkerCapacity> blind = workers.stream().map(w -> w.withRowsPerSecond(0)).toList();
                PlacementPlanner planner = new PlacementPlanner(PlacementPolicy.defaults().withMinReplicas(minReplicas));
                double ideal = PlacementPlanner.idealSeconds(load, speeds);
                double gpuIdeal = gpuWorkers * speedup / (gpuWorkers * speedup + cpuWorkers);
                // No placement beats the ideal, nor the time the CPU workers need for the rows the
                // GPU workers cannot hold: an expert's load is split evenly over its copies, so the
                // GPU workers' memory takes at most the hottest (slots / min replicas) experts whole.
                double[] hottest = load.tokensByLayer().values().stream().flatMapToLong(Arrays::stream)
                        .mapToDouble(t -> -t).sorted().map(t -> -t).toArray();
                double onGpuAtMost = Arrays.stream(hottest).limit((long) gpuWorkers * gpuSlots / minReplicas).sum();
                double total = Arrays.stream(hottest).sum();
                double bound = Math.max(ideal, (total - onGpuAtMost) / (cpuWorkers * cpuRowsPerSecond));

                long t0 = System.nanoTime();
                ExpertPlacement timed = planner.plan(shape, workers, load).placement();
                double timedMs = (System.nanoTime() - t0) / 1e6;
                t0 = System.nanoTime();
                ExpertPlacement rows = planner.plan(shape, blind, load).placement();
                double rowsMs = (System.nanoTime() - t0) / 1e6;
                ExpertPlacement roundRobin = ExpertPlacement.roundRobin(workers.stream().map(WorkerCapacity::id).toList(),
                        shape.moeLayers(), EXPERTS, minReplicas);
                String[] names = {"time-balanced (speeds known)", "rows-balanced (speeds unknown)", "round-robin"};
                ExpertPlacement[] plans = {timed, rows, roundRobin};
                double[] ms = {timedMs, rowsMs, Double.NaN};
                for (int i = 0; i < plans.length; i++) {
                    double[] seconds = PlacementPlanner.workerSeconds(plans[i], load, speeds);
                    double busiest = Arrays.stream(seconds).max().orElse(0);
                    double gpuRows = 0;
                    double allRows = 0;
                    for (int w = 0; w < seconds.length; w++) {
                        double r = seconds[w] * speeds[w];
                        allRows += r;
                        gpuRows += w < gpuWorkers ? r : 0;
                    }
                    out.printf(Locale.ROOT, "| %.0f | %d | %s | %.1f | %.1f | %.3f | %.3f | %.1f%% | %.1f%% | %d | %s |%n",
                            speedup, minReplicas, names[i], busiest * 1e3, ideal * 1e3, busiest / ideal, busiest / bound,
                            100 * gpuRows / allRows,
                            100 * gpuIdeal, redundant(plans[i], minReplicas),
                            Double.isNaN(ms[i]) ? "" : String.format(Locale.ROOT, "%.0f", ms[i]));
                }
            }
        }
    }

    private static int redundant(ExpertPlacement placement, int minReplicas) {
        int copies = 0;
        int experts = 0;
        for (int[][] layer : placement.layers().values()) {
            for (int[] replicas : layer) {
                copies += replicas.length;
                experts++;
            }
        }
        return copies - experts * minReplicas;
    }

    private static String event(int workers, int minReplicas, String what, Timed<PlacementPlan> t) {
        PlacementPlan p = t.value;
        return String.format(Locale.ROOT, "| %d | %d | %s | %s | %d | %d | %.3f → %.3f | %.1f |", workers, minReplicas, what,
                p.decision(), p.loads().size(), p.unloads().size(), p.balancednessBefore(), p.balancednessAfter(),
                t.medianMs);
    }

    /** Per layer, a Zipf distribution with its own exponent over a random ranking of the experts. */
    static ExpertLoad zipfLoad(ModelShape shape, double sMin, double sMax, Random random) {
        Map<Integer, long[]> tokens = new TreeMap<>();
        for (int layer : shape.moeLayers()) {
            double s = sMin + (sMax - sMin) * random.nextDouble();
            int[] rank = permutation(shape.numExperts(), random);
            double h = 0;
            for (int k = 1; k <= shape.numExperts(); k++) {
                h += Math.pow(k, -s);
            }
            long[] t = new long[shape.numExperts()];
            for (int e = 0; e < t.length; e++) {
                t[e] = Math.round(1_000_000 * Math.pow(rank[e] + 1, -s) / h);
            }
            tokens.put(layer, t);
        }
        return new ExpertLoad(tokens);
    }

    /** Re-ranks the experts of a fraction of the layers (the hot experts of those layers change). */
    static ExpertLoad shift(ExpertLoad load, double fraction, Random random) {
        Map<Integer, long[]> tokens = new TreeMap<>(load.tokensByLayer());
        for (Map.Entry<Integer, long[]> entry : tokens.entrySet()) {
            if (random.nextDouble() < fraction) {
                long[] t = entry.getValue();
                int[] perm = permutation(t.length, random);
                long[] shuffled = new long[t.length];
                for (int e = 0; e < t.length; e++) {
                    shuffled[perm[e]] = t[e];
                }
                entry.setValue(shuffled);
            }
        }
        return new ExpertLoad(tokens);
    }

    private static int[] permutation(int n, Random random) {
        int[] p = IntStream.range(0, n).toArray();
        for (int i = n - 1; i > 0; i--) {
            int j = random.nextInt(i + 1);
            int t = p[i];
            p[i] = p[j];
            p[j] = t;
        }
        return p;
    }

    private record Timed<T>(T value, double firstMs, double medianMs) {}

    private static <T> Timed<T> time(Supplier<T> work, int runs) {
        long start = System.nanoTime();
        T value = work.get();
        double first = (System.nanoTime() - start) / 1e6;
        for (int i = 0; i < 2; i++) {
            work.get();
        }
        double[] ms = new double[runs];
        for (int i = 0; i < runs; i++) {
            long t0 = System.nanoTime();
            work.get();
            ms[i] = (System.nanoTime() - t0) / 1e6;
        }
        Arrays.sort(ms);
        return new Timed<>(value, first, ms[runs / 2]);
    }
}
