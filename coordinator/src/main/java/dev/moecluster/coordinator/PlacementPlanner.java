package dev.moecluster.coordinator;

import static java.util.Objects.requireNonNull;

import dev.moecluster.coordinator.PlacementPlan.Decision;
import dev.moecluster.core.placement.ExpertPlacement;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.List;
import java.util.Map;
import java.util.PriorityQueue;
import java.util.TreeMap;
import java.util.stream.IntStream;

/**
 * Plans where expert copies live: redundant replicas for hot experts and a balanced packing in the
 * spirit of DeepSeek's EPLB, within every worker's memory, with at least the minimum replicas of
 * each expert on distinct workers, and migration-aware (it moves nothing for a gain below the
 * policy's threshold). The same input always gives the same plan.
 *
 * <p>Balancedness is mean / max worker load, where an expert's load is split evenly over its
 * copies and a worker's load is the sum over all layers of the copies it holds: with many routers
 * interleaving micro-batches, total work per worker is what limits throughput. Workers that report
 * unequal speeds ({@link WorkerCapacity#rowsPerSecond()}) are balanced in time instead: a worker's
 * load divided by its speed, against the ideal total load / total speed; hot experts then go to
 * fast workers and cold ones to slow workers. Equal or unknown speeds give the row balancing.
 */
public final class PlacementPlanner {
    private final PlacementPolicy policy;

    public PlacementPlanner(PlacementPolicy policy) {
        this.policy = requireNonNull(policy, "policy is null");
    }

    public PlacementPolicy policy() {
        return policy;
    }

    /** Plans a first placement (epoch 1). */
    public PlacementPlan plan(ModelShape shape, List<WorkerCapacity> workers, ExpertLoad load) {
        return plan(new PlanningProblem(shape, workers, load, null, policy.minReplicas()), 1);
    }

    /**
     * Plans the next placement from the current one: repairs it when workers are gone, draining or
     * short of memory, and rebalances it when that gains more than the migration threshold;
     * otherwise returns it unchanged. An empty {@code current} is planned afresh.
     *
     * @throws InfeasiblePlacementException when the workers cannot hold the minimum replicas
     */
    public PlacementPlan plan(ModelShape shape, List<WorkerCapacity> workers, ExpertLoad load,
            ExpertPlacement current) {
        requireNonNull(current, "current is null (use plan(shape, workers, load) for a first placement)");
        return plan(new PlanningProblem(shape, workers, load, current, policy.minReplicas()), Math.addExact(current.epoch(), 1));
    }

    /** Mean / max load over the workers of {@code placement}, each expert's load split over its copies; 1 with no load. */
    public static double balancedness(ExpertPlacement placement, ExpertLoad load) {
        double[] loads = new double[placement.workers().size()];
        placement.layers().forEach((layer, experts) -> {
            for (int e = 0; e < experts.length; e++) {
                int[] copies = Arrays.stream(experts[e]).distinct().toArray();
                for (int w : copies) {
                    loads[w] += load.tokens(layer, e) / (double) copies.length;
                }
            }
        });
        boolean[] all = new boolean[loads.length];
        Arrays.fill(all, true);
        return balancedness(loads, all);
    }

    /**
     * Balancedness of {@code placement} in time on {@code workers}: ideal / busiest worker's time,
     * speeds relative to the slowest known one as the planner takes them (a worker of unknown speed,
     * or one the list lacks, counts as the slowest). Exactly {@link #balancedness(ExpertPlacement,
     * ExpertLoad)} when the speeds are equal or unknown.
     */
    public static double balancedness(ExpertPlacement placement, ExpertLoad load, List<WorkerCapacity> workers) {
        Map<String, Double> rowsPerSecond = new java.util.HashMap<>();
        double slowest = Double.POSITIVE_INFINITY;
        for (WorkerCapacity w : workers) {
            rowsPerSecond.put(w.id(), w.rowsPerSecond());
            if (!w.draining() && w.rowsPerSecond() > 0) {
                slowest = Math.min(slowest, w.rowsPerSecond());
            }
        }
        int n = placement.workers().size();
        double[] speed = new double[n];
        double[] ones = new double[n];
        Arrays.fill(ones, 1.0);
        for (int w = 0; w < n; w++) {
            double rows = rowsPerSecond.getOrDefault(placement.workers().get(w), 0.0);
            speed[w] = rows > 0 && slowest < Double.POSITIVE_INFINITY ? Math.max(1.0, rows / slowest) : 1.0;
        }
        double[] rows = workerSeconds(placement, load, ones);
        double[] times = new double[n];
        for (int w = 0; w < n; w++) {
            times[w] = rows[w] / speed[w];
        }
        boolean[] all = new boolean[n];
        Arrays.fill(all, true);
        return balancedness(times, all, speed);
    }

    /**
     * Seconds of expert compute each worker of {@code placement} has for {@code load}: the rows of
     * its copies (each expert's load split evenly over its copies) divided by its rows per second,
     * given in the placement's worker order; NaN for a worker whose speed is 0 (unknown).
     */
    public static double[] workerSeconds(ExpertPlacement placement, ExpertLoad load, double[] rowsPerSecond) {
        if (rowsPerSecond.length != placement.workers().size()) {
            throw new IllegalArgumentException(rowsPerSecond.length + " speeds for " + placement.workers().size()
                    + " workers");
        }
        double[] rows = new double[rowsPerSecond.length];
        placement.layers().forEach((layer, experts) -> {
            for (int e = 0; e < experts.length; e++) {
                int[] copies = Arrays.stream(experts[e]).distinct().toArray();
                for (int w : copies) {
                    rows[w] += load.tokens(layer, e) / (double) copies.length;
                }
            }
        });
        double[] seconds = new double[rows.length];
        for (int w = 0; w < rows.length; w++) {
            seconds[w] = rowsPerSecond[w] > 0 ? rows[w] / rowsPerSecond[w] : Double.NaN;
        }
        return seconds;
    }

    /**
     * The ideal busiest-worker time: the whole load / the summed speed of the workers; what a
     * perfectly divisible load would take, so no placement does better.
     */
    public static double idealSeconds(ExpertLoad load, double[] rowsPerSecond) {
        double total = 0;
        for (long[] tokens : load.tokensByLayer().values()) {
            for (long t : tokens) {
                total += t;
            }
        }
        return total / Arrays.stream(rowsPerSecond).sum();
    }

    static double balancedness(double[] loads, boolean[] counted) {
        double[] speed = new double[loads.length];
        Arrays.fill(speed, 1.0);
        return balancedness(loads, counted, speed);
    }

    /**
     * Ideal / actual time of the busiest counted worker, where {@code times} are loads divided by
     * {@code speed}: the ideal is the speed-weighted mean time (total load / total speed). Mean /
     * max load when every speed is 1.
     */
    static double balancedness(double[] times, boolean[] counted, double[] speed) {
        double sum = 0;
        double max = 0;
        double n = 0;
        for (int w = 0; w < times.length; w++) {
            if (counted[w]) {
                sum += times[w] * speed[w];
                max = Math.max(max, times[w]);
                n += speed[w];
            }
        }
        return max <= 0 ? 1.0 : sum / n / max;
    }

    private PlacementPlan plan(PlanningProblem problem, long nextEpoch) {
        problem.requireFeasible();
        double target = policy.targetBalancedness();
        double threshold = policy.migrationThreshold();
        if (problem.current == null) {
            return result(problem, packAndLevel(problem), Decision.INITIAL, nextEpoch, 0.0);
        }
        double before = currentBalancedness(problem);
        Assignment repaired = repair(problem);
        if (repaired == null) {
            return result(problem, packAndLevel(problem), Decision.REPAIR, nextEpoch, before);
        }
        PlacementPlan repair = result(problem, repaired, Decision.REPAIR, nextEpoch, before);
        boolean mustRepair = !repair.loads().isEmpty() || !repair.unloads().isEmpty() || problem.currentHasDeadCopies;
        PlacementPlan rebalance = rebalance(problem, repaired, mustRepair ? Decision.REPAIR : Decision.REBALANCE,
                nextEpoch, before, target, threshold);
        if (rebalance != null) {
            return rebalance;
        }
        if (mustRepair) {
            return repair;
        }
        return new PlacementPlan(problem.current, Decision.UNCHANGED, List.of(), List.of(), before, before);
    }

    /**
     * The rebalanced plan that beats {@code repaired} by more than the threshold with the fewest
     * moves, or null. Four candidates, from the fewest moves to the best packing: the repaired
     * placement leveled; the current placement given the fresh packing's replica counts, leveled;
     * the fresh packing keeping copies where they are while their worker stays under the target
     * load, leveled; and the fresh packing itself. The fewest moves wins unless another candidate
     * balances better by more than the threshold.
     */
    private PlacementPlan rebalance(PlanningProblem problem, Assignment repaired, Decision decision, long nextEpoch,
            double before, double target, double threshold) {
        double floor = repaired.balancedness() + threshold;
        if (floor >= 1.0) {
            return null;
        }
        // Leveling stops at the target, or just past the floor when that is higher: a candidate
        // below the floor is worthless, and every step past it costs a move.
        double levelTo = Math.min(1.0, Math.max(target, floor + 1e-9));
        Assignment fresh = packAndLevel(problem);
        Assignment leveled = repaired.copy();
        LoadLeveling.level(problem, leveled, levelTo);
        Assignment recounted = recount(problem, fresh);
        if (recounted != null) {
            LoadLeveling.level(problem, recounted, levelTo);
        }
        Assignment kept = keep(problem, fresh, problem.meanLoad() / levelTo);
        if (kept != null) {
            LoadLeveling.level(problem, kept, levelTo);
        }
        Assignment[] candidates = {leveled, recounted, kept, fresh};
        double best = Double.NEGATIVE_INFINITY;
        for (Assignment a : candidates) {
            if (a != null && a.balancedness() > floor) {
                best = Math.max(best, a.balancedness());
            }
        }
        PlacementPlan chosen = null;
        for (Assignment a : candidates) {
            if (a == null || a.balancedness() <= floor || a.balancedness() < best - threshold) {
                continue;
            }
            PlacementPlan plan = result(problem, a, decision, nextEpoch, before);
            if (chosen == null || moves(plan) < moves(chosen)) {
                chosen = plan;
            }
        }
        return chosen;
    }

    private Assignment packAndLevel(PlanningProblem problem) {
        Assignment fresh = pack(problem);
        LoadLeveling.level(problem, fresh, policy.targetBalancedness());
        if (problem.uniformSpeeds) {
            return fresh;
        }
        // With unequal speeds the speed-blind (rows-balanced) packing, leveled in time, competes
        // too: leveling never raises the busiest worker's time, so the plan is never slower than
        // the one a rows-balancing planner would make.
        PlanningProblem blind = problem.withUniformSpeeds();
        Assignment rows = pack(blind);
        LoadLeveling.level(blind, rows, policy.targetBalancedness());
        Assignment timed = rows.rebase(problem);
        LoadLeveling.level(problem, timed, policy.targetBalancedness());
        return timed.balancedness() > fresh.balancedness() ? timed : fresh;
    }

    private static int moves(PlacementPlan plan) {
        return plan.loads().size() + plan.unloads().size();
    }

    /**
     * The input placement as it can stand: copies on workers that are gone or draining dropped,
     * and workers over their memory trimmed (redundant and cold copies first).
     */
    private static Assignment fromCurrent(PlanningProblem p) {
        Assignment a = new Assignment(p);
        for (int x = 0; x < p.numExperts; x++) {
            for (int w : p.currentHolders[x]) {
                if (p.eligible[w]) {
                    a.add(x, w, true);
                }
            }
        }
        for (int w : a.overBudgetWorkers()) {
            while (a.used(w) > p.slots[w]) {
                int[] held = a.heldBy(w);
                int drop = held[0];
                for (int y : held) {
                    if (trimFirst(p, a, y, drop)) {
                        drop = y;
                    }
                }
                a.remove(drop, w);
            }
        }
        return a;
    }

    /** Whether copy {@code y} should be trimmed before {@code than}: redundant before required, then colder. */
    private static boolean trimFirst(PlanningProblem p, Assignment a, int y, int than) {
        boolean yRedundant = a.count(y) > p.minReplicas;
        boolean thanRedundant = a.count(than) > p.minReplicas;
        if (yRedundant != thanRedundant) {
            return yRedundant;
        }
        int c = Double.compare(a.share(y), a.share(than));
        return c != 0 ? c < 0 : y < than;
    }

    /**
     * Brings every expert to {@code counts} copies: the minimum first (making room if it must;
     * false when it cannot), then the rest as memory allows, hottest per copy first, each on the
     * least-loaded worker that can take it.
     */
    private static boolean fill(PlanningProblem p, Assignment a, int[] counts) {
        for (int x : sorted(p.numExperts, x -> a.count(x) < p.minReplicas, x -> p.load[x])) {
            while (a.count(x) < p.minReplicas) {
                int w = a.leastLoadedFor(x);
                if (w < 0) {
                    w = a.makeRoomFor(x);
                }
                if (w < 0) {
                    return false;
                }
                a.add(x, w);
            }
        }
        for (int x : sorted(p.numExperts, x -> a.count(x) < counts[x], a::share)) {
            while (a.count(x) < counts[x] && a.freeSlots() > 0) {
                int w = a.leastLoadedFor(x);
                if (w < 0) {
                    break;
                }
                a.add(x, w);
            }
        }
        return true;
    }

    /**
     * The least change to the input placement that drops copies on workers that are gone or
     * draining, trims workers over their memory, gives every expert its minimum replicas and, as
     * memory allows, its former replica count. Null when the minimum cannot be restored without a
     * full replan.
     */
    private static Assignment repair(PlanningProblem p) {
        Assignment a = fromCurrent(p);
        int[] restore = IntStream.range(0, p.numExperts)
                .map(x -> Math.min(p.eligibleCount, Math.max(p.minReplicas, p.previousCount[x])))
                .toArray();
        return fill(p, a, restore) ? a : null;
    }

    /**
     * The input placement with the replica counts of {@code packed}: surplus copies leave their
     * heaviest holders, missing ones go to the least-loaded workers. Null when the minimum cannot
     * be placed.
     */
    private static Assignment recount(PlanningProblem p, Assignment packed) {
        Assignment a = fromCurrent(p);
        int[] counts = new int[p.numExperts];
        for (int x = 0; x < p.numExperts; x++) {
            counts[x] = Math.max(p.minReplicas, packed.count(x));
            while (a.count(x) > counts[x]) {
                int heaviest = -1;
                for (int h : a.holders(x)) {
                    if (heaviest < 0 || a.load(h) > a.load(heaviest)) {
                        heaviest = h;
                    }
                }
                a.remove(x, heaviest);
            }
        }
        return fill(p, a, counts) ? a : null;
    }

    /**
     * A packing with the replica counts of {@code packed} that keeps copies where they are: first,
     * in decreasing load per copy, each copy stays on a worker that holds it now if that worker
     * stays under {@code cap}; then the copies still missing go, in the same order, to the
     * least-loaded workers that can take them. Null when the minimum cannot be placed.
     */
    private static Assignment keep(PlanningProblem p, Assignment packed, double cap) {
        int[] counts = new int[p.numExperts];
        for (int x = 0; x < p.numExperts; x++) {
            counts[x] = Math.max(p.minReplicas, packed.count(x));
        }
        Assignment a = new Assignment(p);
        a.expect(counts);
        int mandatoryLeft = p.numExperts * p.minReplicas;
        for (int x : sorted(p.numExperts, x -> true, x -> p.load[x] / counts[x])) {
            double share = p.load[x] / counts[x];
            for (int w : p.currentHolders[x]) {
                if (a.count(x) < counts[x] && p.eligible[w] && a.used(w) < p.slots[w]
                        && a.load(w) + share / p.speed[w] <= cap) {
                    a.add(x, w);
                    if (a.count(x) <= p.minReplicas) {
                        mandatoryLeft--;
                    }
                }
            }
            while (a.count(x) < counts[x]) {
                boolean mandatory = a.count(x) < p.minReplicas;
                if (!mandatory && a.freeSlots() <= mandatoryLeft) {
                    break;
                }
                int w = a.leastLoadedFor(x);
                if (w < 0 && mandatory) {
                    w = a.makeRoomFor(x);
                }
                if (w < 0) {
                    if (mandatory) {
                        return null;
                    }
                    break;
                }
                a.add(x, w);
                if (mandatory) {
                    mandatoryLeft--;
                }
            }
        }
        a.settle();
        return a;
    }

    /**
     * A balanced packing from scratch: replica counts first (the minimum for every expert, then
     * redundant copies one at a time to the expert with the highest load per copy, as few as reach
     * the target balancedness within memory), then copies in decreasing load per copy, each to the
     * least-loaded worker that can take it.
     */
    private Assignment pack(PlanningProblem p) {
        int[] extras = extrasInOrder(p);
        double target = policy.targetBalancedness();
        Assignment best = pack(p, counts(p, extras, 0));
        double bestBalance = best.balancedness();
        if (bestBalance >= target || extras.length == 0) {
            return best;
        }
        // Balancedness grows with redundant copies, though not strictly: double until the target
        // is met, then bisect for the fewest copies that meet it.
        int low = 0;
        int high = -1;
        Assignment atHigh = null;
        for (int k = 1; ; k = Math.min(2 * k, extras.length)) {
            Assignment a = pack(p, counts(p, extras, k));
            double b = a.balancedness();
            if (b > bestBalance) {
                best = a;
                bestBalance = b;
            }
            if (b >= target) {
                high = k;
                atHigh = a;
                break;
            }
            low = k;
            if (k == extras.length) {
                break;
            }
        }
        if (atHigh == null) {
            return best;
        }
        while (high - low > 1) {
            int mid = (low + high) >>> 1;
            Assignment a = pack(p, counts(p, extras, mid));
            if (a.balancedness() >= target) {
                high = mid;
                atHigh = a;
            } else {
                low = mid;
            }
        }
        return atHigh;
    }

    /**
     * Redundant copies in the order EPLB adds them: each to the expert with the highest load per
     * copy; as many as the free memory holds, and none for experts without load.
     */
    private static int[] extrasInOrder(PlanningProblem p) {
        long capacity = 0;
        for (int s : p.slots) {
            capacity += s;
        }
        long free = capacity - (long) p.minReplicas * p.numExperts;
        int[] count = new int[p.numExperts];
        Arrays.fill(count, p.minReplicas);
        PriorityQueue<Integer> hottest = new PriorityQueue<>(Math.max(1, p.numExperts),
                Comparator.<Integer>comparingDouble(x -> -p.load[x] / count[x]).thenComparingInt(x -> x));
        for (int x = 0; x < p.numExperts; x++) {
            if (p.load[x] > 0 && count[x] < p.eligibleCount) {
                hottest.add(x);
            }
        }
        int[] order = new int[(int) Math.min(free, Integer.MAX_VALUE - 8)];
        int n = 0;
        while (n < order.length && !hottest.isEmpty()) {
            int x = hottest.poll();
            order[n++] = x;
            count[x]++;
            if (count[x] < p.eligibleCount) {
                hottest.add(x);
            }
        }
        return Arrays.copyOf(order, n);
    }

    private static int[] counts(PlanningProblem p, int[] extras, int k) {
        int[] counts = new int[p.numExperts];
        Arrays.fill(counts, p.minReplicas);
        for (int i = 0; i < k; i++) {
            counts[extras[i]]++;
        }
        return counts;
    }

    /** Longest-processing-time-first packing of the copies {@code counts} asks for. */
    private static Assignment pack(PlanningProblem p, int[] counts) {
        Assignment a = new Assignment(p);
        a.expect(counts);
        int mandatoryLeft = p.numExperts * p.minReplicas;
        for (int x : sorted(p.numExperts, x -> true, x -> p.load[x] / counts[x])) {
            for (int copy = 0; copy < counts[x]; copy++) {
                boolean mandatory = copy < p.minReplicas;
                if (!mandatory && a.freeSlots() <= mandatoryLeft) {
                    break;
                }
                int w = a.leastLoadedFor(x);
                if (w < 0 && mandatory) {
                    w = a.makeRoomFor(x);
                }
                if (w < 0) {
                    if (mandatory) {
                        throw new InfeasiblePlacementException("cannot place " + p.minReplicas
                                + " replicas of expert " + p.expertOf(x) + " of layer " + p.layerOf(x)
                                + " on distinct workers within their memory (" + p.eligibleCount
                                + " eligible workers, " + a.freeSlots() + " free expert slots left)");
                    }
                    break;
                }
                a.add(x, w);
                if (mandatory) {
                    mandatoryLeft--;
                }
            }
        }
        a.settle();
        return a;
    }

    /** The experts that pass {@code filter}, by decreasing {@code key}, ties by index. */
    private static int[] sorted(int n, java.util.function.IntPredicate filter,
            java.util.function.IntToDoubleFunction key) {
        double[] keys = new double[n];
        for (int x = 0; x < n; x++) {
            keys[x] = key.applyAsDouble(x);
        }
        return IntStream.range(0, n)
                .filter(filter)
                .boxed()
                .sorted(Comparator.<Integer>comparingDouble(x -> -keys[x]).thenComparingInt(x -> x))
                .mapToInt(Integer::intValue)
                .toArray();
    }

    /** Balancedness of the input placement as it serves now: copies on workers that are gone carry nothing. */
    private static double currentBalancedness(PlanningProblem p) {
        double[] loads = new double[p.numWorkers];
        boolean[] counted = p.eligible.clone();
        for (int x = 0; x < p.numExperts; x++) {
            int[] h = p.currentHolders[x];
            for (int w : h) {
                loads[w] += p.load[x] / h.length / p.speed[w];
                counted[w] = true;
            }
        }
        return balancedness(loads, counted, p.speed);
    }

    private static PlacementPlan result(PlanningProblem p, Assignment a, Decision decision, long epoch,
            double before) {
        int experts = p.shape.numExperts();
        Map<Integer, int[][]> layers = new TreeMap<>();
        List<int[]> loads = new ArrayList<>();
        List<int[]> unloads = new ArrayList<>(p.strayCopies);
        for (int lp = 0; lp < p.shape.moeLayers().size(); lp++) {
            int layer = p.shape.moeLayers().get(lp);
            int[][] replicas = new int[experts][];
            for (int e = 0; e < experts; e++) {
                int x = lp * experts + e;
                int[] now = a.holders(x);
                int[] was = p.current == null ? new int[0] : p.currentHolders[x];
                // Copies that stay keep their order (and the primary); new ones follow.
                int[] kept = Arrays.stream(was).filter(w -> contains(now, w)).toArray();
                int[] added = Arrays.stream(now).filter(w -> !contains(was, w)).toArray();
                replicas[e] = IntStream.concat(Arrays.stream(kept), Arrays.stream(added)).toArray();
                for (int w : added) {
                    loads.add(new int[] {w, layer, e});
                }
                for (int w : was) {
                    if (!contains(now, w)) {
                        unloads.add(new int[] {w, layer, e});
                    }
                }
            }
            layers.put(layer, replicas);
        }
        List<String> ids = p.workers.stream().map(WorkerCapacity::id).toList();
        ExpertPlacement placement = new ExpertPlacement(epoch, ids, layers);
        return new PlacementPlan(placement, decision, copies(p, loads), copies(p, unloads), before,
                a.balancedness());
    }

    private static List<ExpertCopy> copies(PlanningProblem p, List<int[]> moves) {
        return moves.stream()
                .sorted(Comparator.<int[]>comparingInt(m -> m[0]).thenComparingInt(m -> m[1]).thenComparingInt(m -> m[2]))
                .map(m -> new ExpertCopy(p.id(m[0]), m[1], m[2]))
                .toList();
    }

    private static boolean contains(int[] a, int v) {
        for (int x : a) {
            if (x == v) {
                return true;
            }
        }
        return false;
    }
}
