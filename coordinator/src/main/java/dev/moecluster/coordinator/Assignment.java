package dev.moecluster.coordinator;

import java.util.Arrays;
import java.util.Comparator;
import java.util.TreeSet;
import java.util.stream.IntStream;

/**
 * A placement under construction: which workers hold which expert copies, and each worker's load
 * with every expert's load split evenly over its copies. A worker's load is a time: its rows
 * divided by its relative speed (just its rows when speeds are equal). Workers are kept ordered by
 * (load, copies held, position), so "the least-loaded worker that can take this expert" is a short
 * walk from the front, and ties never depend on anything but the input.
 *
 * <p>While a packing is being built, {@link #expect} can fix how many copies an expert will get, so
 * each copy carries its final share from the start instead of the whole load landing on the first.
 */
final class Assignment {
    private final PlanningProblem problem;
    private final int[][] holders;
    private final int[] count;
    private final int[][] held;
    private final int[] used;
    private final double[] workerLoad;
    /** Copies each expert is expected to get while packing, or null. */
    private int[] expected;
    /** Eligible workers with a free slot, by (load, copies, position). */
    private TreeSet<Integer> open;
    /** All eligible workers, same order. */
    private TreeSet<Integer> all;
    private final int[] stamp;
    private int stampValue;
    private int freeSlots;

    Assignment(PlanningProblem problem) {
        this.problem = problem;
        int experts = problem.numExperts;
        int workers = problem.numWorkers;
        this.holders = new int[experts][];
        this.count = new int[experts];
        for (int x = 0; x < experts; x++) {
            holders[x] = new int[Math.max(problem.minReplicas, 1)];
        }
        this.held = new int[workers][];
        this.used = new int[workers];
        this.workerLoad = new double[workers];
        this.stamp = new int[workers];
        for (int w = 0; w < workers; w++) {
            held[w] = new int[Math.min(problem.slots[w], 16) + 1];
            freeSlots += problem.eligible[w] ? problem.slots[w] : 0;
        }
        rebuildOrder();
    }

    private Assignment(Assignment from) {
        this.problem = from.problem;
        this.holders = new int[from.holders.length][];
        for (int x = 0; x < holders.length; x++) {
            holders[x] = from.holders[x].clone();
        }
        this.count = from.count.clone();
        this.held = new int[from.held.length][];
        for (int w = 0; w < held.length; w++) {
            held[w] = from.held[w].clone();
        }
        this.used = from.used.clone();
        this.workerLoad = from.workerLoad.clone();
        this.expected = from.expected == null ? null : from.expected.clone();
        this.stamp = new int[from.stamp.length];
        this.freeSlots = from.freeSlots;
        rebuildOrder();
    }

    /**
     * The same copies as a placement of {@code other}, a problem over the same workers and experts
     * (with other speeds): each expert's holders in the same order.
     */
    Assignment rebase(PlanningProblem other) {
        Assignment a = new Assignment(other);
        for (int x = 0; x < count.length; x++) {
            for (int i = 0; i < count[x]; i++) {
                a.add(x, holders[x][i]);
            }
        }
        return a;
    }

    /** An independent copy to explore from. */
    Assignment copy() {
        return new Assignment(this);
    }

    private void rebuildOrder() {
        Comparator<Integer> byLoad = (a, b) -> {
            int c = Double.compare(workerLoad[a], workerLoad[b]);
            if (c != 0) {
                return c;
            }
            c = Integer.compare(used[a], used[b]);
            return c != 0 ? c : Integer.compare(a, b);
        };
        open = new TreeSet<>(byLoad);
        all = new TreeSet<>(byLoad);
        for (int w = 0; w < problem.numWorkers; w++) {
            if (problem.eligible[w]) {
                all.add(w);
                if (used[w] < problem.slots[w]) {
                    open.add(w);
                }
            }
        }
    }

    /** Fixes the copies each expert will get; call before adding any. */
    void expect(int[] counts) {
        if (IntStream.of(count).anyMatch(c -> c > 0)) {
            throw new IllegalStateException("expect() must come before the first copy");
        }
        expected = counts.clone();
    }

    /** Back to shares by the copies actually placed (some expected ones may not have found room). */
    void settle() {
        expected = null;
        double[] loads = workerLoads();
        System.arraycopy(loads, 0, workerLoad, 0, loads.length);
        rebuildOrder();
    }

    private int divisor(int x, int copies) {
        return expected == null ? copies : Math.max(copies, expected[x]);
    }

    int count(int x) {
        return count[x];
    }

    int used(int worker) {
        return used[worker];
    }

    int freeSlots() {
        return freeSlots;
    }

    /** The eligible worker with the highest load (ties: more copies, then the later position). */
    int heaviest() {
        return all.last();
    }

    /** Eligible workers from the least loaded up. */
    Iterable<Integer> lightestFirst() {
        return all;
    }

    /** Eligible workers with a free slot, from the least loaded up. */
    Iterable<Integer> withRoomLightestFirst() {
        return open;
    }

    double load(int worker) {
        return workerLoad[worker];
    }

    /** One copy's share of an expert's load. */
    double share(int x) {
        int d = divisor(x, count[x]);
        return d == 0 ? 0 : problem.load[x] / d;
    }

    /** Holders of an expert in the order they were added. */
    int[] holders(int x) {
        return Arrays.copyOf(holders[x], count[x]);
    }

    /** Experts held by a worker, in the order they were added. */
    int[] heldBy(int worker) {
        return Arrays.copyOf(held[worker], used[worker]);
    }

    boolean holds(int worker, int x) {
        for (int i = 0; i < count[x]; i++) {
            if (holders[x][i] == worker) {
                return true;
            }
        }
        return false;
    }

    /**
     * Adds a copy of expert {@code x} on {@code worker}. {@code force} admits a copy beyond the
     * worker's slots (only while rebuilding an input placement whose worker shrank; trimmed after).
     */
    void add(int x, int worker, boolean force) {
        if (!problem.eligible[worker] || holds(worker, x) || (!force && used[worker] >= problem.slots[worker])) {
            throw new IllegalStateException("cannot add expert " + x + " to worker " + worker);
        }
        int c = count[x];
        double after = reshare(x, c, c + 1);
        if (c == holders[x].length) {
            holders[x] = Arrays.copyOf(holders[x], c * 2);
        }
        holders[x][c] = worker;
        count[x] = c + 1;

        open.remove(worker);
        all.remove(worker);
        if (used[worker] < problem.slots[worker]) {
            freeSlots--;
        }
        if (used[worker] == held[worker].length) {
            held[worker] = Arrays.copyOf(held[worker], used[worker] * 2);
        }
        held[worker][used[worker]++] = x;
        workerLoad[worker] += after / problem.speed[worker];
        reinsert(worker);
    }

    void add(int x, int worker) {
        add(x, worker, false);
    }

    void remove(int x, int worker) {
        int c = count[x];
        int at = indexOf(holders[x], c, worker);
        if (at < 0) {
            throw new IllegalStateException("worker " + worker + " does not hold expert " + x);
        }
        double before = share(x);
        System.arraycopy(holders[x], at + 1, holders[x], at, c - at - 1);
        count[x] = c - 1;

        open.remove(worker);
        all.remove(worker);
        int h = indexOf(held[worker], used[worker], x);
        System.arraycopy(held[worker], h + 1, held[worker], h, used[worker] - h - 1);
        used[worker]--;
        if (used[worker] < problem.slots[worker]) {
            freeSlots++;
        }
        workerLoad[worker] = used[worker] == 0 ? 0 : workerLoad[worker] - before / problem.speed[worker];
        reinsert(worker);
        reshare(x, c, c - 1);
    }

    /**
     * Moves the holders of {@code x} that stay from its share at {@code from} copies to its share at
     * {@code to} copies, and returns the share at {@code to}.
     */
    private double reshare(int x, int from, int to) {
        double load = problem.load[x];
        int dFrom = divisor(x, from);
        int dTo = divisor(x, to);
        double after = dTo == 0 ? 0 : load / dTo;
        if (load > 0 && dFrom != dTo && dFrom > 0) {
            double before = load / dFrom;
            for (int i = 0; i < Math.min(from, to); i++) {
                int h = holders[x][i];
                open.remove(h);
                all.remove(h);
                workerLoad[h] += (after - before) / problem.speed[h];
                reinsert(h);
            }
        }
        return after;
    }

    private void reinsert(int worker) {
        all.add(worker);
        if (used[worker] < problem.slots[worker]) {
            open.add(worker);
        }
    }

    private static int indexOf(int[] a, int n, int v) {
        for (int i = 0; i < n; i++) {
            if (a[i] == v) {
                return i;
            }
        }
        return -1;
    }

    private void markHolders(int x) {
        stampValue++;
        for (int i = 0; i < count[x]; i++) {
            stamp[holders[x][i]] = stampValue;
        }
    }

    /**
     * The worker with a free slot, not holding {@code x}, that would finish its work first with one
     * more copy of {@code x}; or -1. With equal speeds that is the least-loaded one; with unequal
     * ones a hot copy goes to a fast worker even when a slow one is idler.
     */
    int leastLoadedFor(int x) {
        markHolders(x);
        if (problem.uniformSpeeds) {
            for (int w : open) {
                if (stamp[w] != stampValue) {
                    return w;
                }
            }
            return -1;
        }
        int d = divisor(x, count[x] + 1);
        double share = d == 0 ? 0 : problem.load[x] / d;
        int best = -1;
        double bestFinish = Double.POSITIVE_INFINITY;
        for (int w : open) {
            if (workerLoad[w] >= bestFinish) {
                break; // open is ordered by time: no later worker can finish earlier
            }
            if (stamp[w] != stampValue) {
                double finish = workerLoad[w] + share / problem.speed[w];
                if (finish < bestFinish) {
                    best = w;
                    bestFinish = finish;
                }
            }
        }
        return best;
    }

    /**
     * Frees a slot for {@code x} when every worker with a free slot already holds it: moves some
     * other copy from a full worker that lacks {@code x} to a worker with room, or failing that
     * drops a redundant copy (one above the minimum) from a worker that lacks {@code x}. Returns the
     * worker that now has room for {@code x}, or -1.
     */
    int makeRoomFor(int x) {
        markHolders(x);
        int[] full = all.stream()
                .mapToInt(Integer::intValue)
                .filter(w -> stamp[w] != stampValue && used[w] >= problem.slots[w])
                .toArray();
        for (int u : full) {
            for (int y : heldBy(u)) {
                markHolders(y);
                for (int w : open) {
                    if (stamp[w] != stampValue && w != u) {
                        remove(y, u);
                        add(y, w);
                        return u;
                    }
                }
            }
        }
        for (int u : full) {
            for (int y : heldBy(u)) {
                if (count[y] > problem.minReplicas) {
                    remove(y, u);
                    return u;
                }
            }
        }
        return -1;
    }

    /** Worker loads recomputed from the copies (free of the rounding that incremental updates gather). */
    double[] workerLoads() {
        double[] loads = new double[problem.numWorkers];
        for (int x = 0; x < problem.numExperts; x++) {
            double s = share(x);
            for (int i = 0; i < count[x]; i++) {
                int h = holders[x][i];
                loads[h] += s / problem.speed[h];
            }
        }
        return loads;
    }

    /**
     * Ideal / actual time of the busiest eligible worker (mean / max load when speeds are equal);
     * 1 when there is no load.
     */
    double balancedness() {
        return PlacementPlanner.balancedness(workerLoads(), problem.eligible, problem.speed);
    }

    /** Workers holding more copies than their slots (only after forced adds). */
    int[] overBudgetWorkers() {
        return IntStream.range(0, problem.numWorkers).filter(w -> used[w] > problem.slots[w]).toArray();
    }
}
