package dev.moecluster.coordinator;

import static java.util.Objects.requireNonNull;

import dev.moecluster.core.placement.ExpertPlacement;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * The planner's input, validated and indexed. Experts are flat indices {@code x = layerPosition ·
 * experts + expert}; workers are positions in the input list. Maps are only looked up, never
 * iterated, so nothing depends on hash order.
 */
final class PlanningProblem {
    final ModelShape shape;
    final List<WorkerCapacity> workers;
    final int minReplicas;
    final int numWorkers;
    final int numExperts;
    final double[] load;
    final double totalLoad;
    /** Copies a worker may hold: its memory in experts, at most one copy of each; 0 when draining. */
    final int[] slots;
    /** Workers that may hold experts: not draining and with room for at least one. */
    final boolean[] eligible;
    final int eligibleCount;
    /**
     * Each worker's speed relative to the slowest known one (1 for a worker of unknown speed):
     * loads divided by it are times, in rows at the slowest speed. Exactly 1 everywhere when the
     * speeds are all equal or unknown, so the planner then balances rows as it always did.
     */
    final double[] speed;
    /** Whether every speed is 1. */
    final boolean uniformSpeeds;
    /** Sum of the eligible workers' speeds: total load / this is the ideal time of the busiest worker. */
    final double totalSpeed;

    /** The input placement, or null when there is none (or it places nothing). */
    final ExpertPlacement current;
    /** Per expert, its live holders in the input placement (eligible or draining), in replica order. */
    final int[][] currentHolders;
    /** Per expert, its distinct holders in the input placement including workers that are gone. */
    final int[] previousCount;
    /** Whether the input placement names copies on workers that are gone. */
    final boolean currentHasDeadCopies;
    /** Live copies in the input placement outside the model shape, as {worker, layer, expert}. */
    final List<int[]> strayCopies;
    private final ExpertLoad expertLoad;
    private final ExpertPlacement inputPlacement;

    PlanningProblem(ModelShape shape, List<WorkerCapacity> workers, ExpertLoad load, ExpertPlacement current,
            int minReplicas) {
        this.shape = requireNonNull(shape, "shape is null");
        this.workers = List.copyOf(requireNonNull(workers, "workers is null"));
        this.expertLoad = requireNonNull(load, "load is null");
        this.inputPlacement = current;
        this.minReplicas = minReplicas;
        this.numWorkers = this.workers.size();
        this.numExperts = shape.totalExperts();

        Map<String, Integer> position = new HashMap<>();
        for (int w = 0; w < numWorkers; w++) {
            if (position.putIfAbsent(this.workers.get(w).id(), w) != null) {
                throw new IllegalArgumentException("worker " + this.workers.get(w).id() + " is listed twice");
            }
        }

        this.load = new double[numExperts];
        double total = 0;
        for (Map.Entry<Integer, long[]> entry : load.tokensByLayer().entrySet()) {
            int lp = layerPosition(entry.getKey());
            if (lp < 0) {
                throw new IllegalArgumentException("load reported for layer " + entry.getKey()
                        + ", which is not a MoE layer of the model (MoE layers: " + shape.moeLayers() + ")");
            }
            long[] tokens = entry.getValue();
            if (tokens.length != shape.numExperts()) {
                throw new IllegalArgumentException("load of layer " + entry.getKey() + " has " + tokens.length
                        + " experts, the model has " + shape.numExperts());
            }
            for (int e = 0; e < tokens.length; e++) {
                this.load[lp * shape.numExperts() + e] = tokens[e];
            }
        }
        for (double l : this.load) {
            total += l;
        }
        this.totalLoad = total;

        this.slots = new int[numWorkers];
        this.eligible = new boolean[numWorkers];
        int count = 0;
        for (int w = 0; w < numWorkers; w++) {
            WorkerCapacity worker = this.workers.get(w);
            long fit = worker.memoryBytes() / shape.bytesPerExpert();
            slots[w] = worker.draining() ? 0 : (int) Math.min(fit, numExperts);
            eligible[w] = slots[w] > 0;
            count += eligible[w] ? 1 : 0;
        }
        this.eligibleCount = count;

        double slowest = Double.POSITIVE_INFINITY;
        for (WorkerCapacity worker : this.workers) {
            if (!worker.draining() && worker.rowsPerSecond() > 0) {
                slowest = Math.min(slowest, worker.rowsPerSecond());
            }
        }
        this.speed = new double[numWorkers];
        boolean uniform = true;
        double speeds = 0;
        for (int w = 0; w < numWorkers; w++) {
            double rows = this.workers.get(w).rowsPerSecond();
            // x / x is exactly 1, so equal speeds give exactly today's row balancing.
            speed[w] = rows > 0 && slowest < Double.POSITIVE_INFINITY ? Math.max(1.0, rows / slowest) : 1.0;
            uniform &= speed[w] == 1.0;
            speeds += eligible[w] ? speed[w] : 0;
        }
        this.uniformSpeeds = uniform;
        this.totalSpeed = speeds;

        boolean places = current != null && current.layers().values().stream().anyMatch(es -> es.length > 0);
        this.current = places ? current : null;
        this.currentHolders = new int[numExperts][];
        this.previousCount = new int[numExperts];
        this.strayCopies = new ArrayList<>();
        boolean dead = false;
        if (this.current != null) {
            List<String> ids = this.current.workers();
            int[] toPosition = new int[ids.size()];
            for (int i = 0; i < ids.size(); i++) {
                Integer p = position.get(ids.get(i));
                toPosition[i] = p == null ? -1 : p;
            }
            for (Map.Entry<Integer, int[][]> entry : this.current.layers().entrySet()) {
                int layer = entry.getKey();
                int lp = layerPosition(layer);
                int[][] experts = entry.getValue();
                for (int e = 0; e < experts.length; e++) {
                    int[] distinct = Arrays.stream(experts[e]).distinct().toArray();
                    boolean inShape = lp >= 0 && e < shape.numExperts();
                    int[] live = Arrays.stream(distinct).map(i -> toPosition[i]).filter(p -> p >= 0).toArray();
                    dead |= live.length < distinct.length;
                    if (inShape) {
                        int x = lp * shape.numExperts() + e;
                        currentHolders[x] = live;
                        previousCount[x] = distinct.length;
                    } else {
                        for (int p : live) {
                            strayCopies.add(new int[] {p, layer, e});
                        }
                    }
                }
            }
            for (int x = 0; x < numExperts; x++) {
                if (currentHolders[x] == null) {
                    currentHolders[x] = new int[0];
                }
            }
        }
        this.currentHasDeadCopies = dead;
    }

    /** Position of a layer in the model's MoE layers, or -1. */
    int layerPosition(int layer) {
        int i = Collections.binarySearch(shape.moeLayers(), layer);
        return i >= 0 ? i : -1;
    }

    int layerOf(int x) {
        return shape.moeLayers().get(x / shape.numExperts());
    }

    int expertOf(int x) {
        return x % shape.numExperts();
    }

    String id(int worker) {
        return workers.get(worker).id();
    }

    /**
     * The busiest worker's time if the load could be spread in proportion to speed: total load /
     * total speed of the eligible workers (the mean load when speeds are equal).
     */
    double meanLoad() {
        return eligibleCount == 0 ? 0 : totalLoad / totalSpeed;
    }

    /** The same problem with every worker's speed unknown: what a rows-balancing planner solves. */
    PlanningProblem withUniformSpeeds() {
        List<WorkerCapacity> blind = workers.stream().map(w -> w.withRowsPerSecond(0)).toList();
        return new PlanningProblem(shape, blind, expertLoad, inputPlacement, minReplicas);
    }

    /** Fails with the shortfall unless the eligible workers can hold {@code minReplicas} copies of every expert. */
    void requireFeasible() {
        if (numExperts == 0) {
            return;
        }
        long bytes = shape.bytesPerExpert();
        if (eligibleCount < minReplicas) {
            int draining = (int) workers.stream().filter(WorkerCapacity::draining).count();
            throw new InfeasiblePlacementException("min replicas " + minReplicas + " needs " + minReplicas
                    + " distinct workers with room for an expert (" + bytes + " bytes), but only " + eligibleCount
                    + " of " + numWorkers + " workers qualify (" + draining + " draining, "
                    + (numWorkers - draining - eligibleCount) + " with less memory than one expert): short by "
                    + (minReplicas - eligibleCount) + " worker(s)");
        }
        // A worker holds each expert at most once. With every expert needing the same count r,
        // Gale–Ryser reduces to one inequality: sum over workers of min(slots, experts) >= r · experts.
        long capacity = 0;
        for (int s : slots) {
            capacity += s;
        }
        long needed = (long) minReplicas * numExperts;
        if (capacity < needed) {
            long shortfall = needed - capacity;
            throw new InfeasiblePlacementException("not enough worker memory for " + minReplicas + " replica(s) of "
                    + numExperts + " experts (" + shape.moeLayers().size() + " layers × " + shape.numExperts()
                    + "): needs " + needed + " expert copies × " + bytes + " bytes = "
                    + humanBytes(needed * bytes) + ", the " + eligibleCount + " eligible workers hold " + capacity
                    + " copies = " + humanBytes(capacity * bytes) + "; short by " + shortfall + " copies = "
                    + humanBytes(shortfall * bytes) + " ("
                    + shortfall * bytes + " bytes)");
        }
    }

    /** Bytes in the largest binary unit that keeps at least one whole unit. */
    static String humanBytes(long bytes) {
        String[] units = {"bytes", "KiB", "MiB", "GiB", "TiB"};
        int u = 0;
        double v = bytes;
        while (u < units.length - 1 && v >= 1024) {
            v /= 1024;
            u++;
        }
        return u == 0 ? bytes + " bytes" : String.format(java.util.Locale.ROOT, "%.2f %s", v, units[u]);
    }
}
