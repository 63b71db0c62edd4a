package dev.moecluster.coordinator;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.List;
import java.util.stream.IntStream;

/**
 * Improves a placement a few copies at a time: while balancedness is below the target, it takes
 * the heaviest worker (the one with the most work for its speed: loads here are times) and makes
 * the change that lowers it most: move one of its copies to the
 * least-loaded worker that can take it, add a replica of one of its experts there, drop one of its
 * redundant copies, or swap a copy with a lighter worker's. When none of those helps (typically a
 * worker whose one hot copy outweighs any free room), it splits: adds a replica of the hot expert
 * on a light worker, or moves the copy there, and sheds that worker's other copies to workers with
 * room. It stops when nothing lowers the heaviest worker. Each step touches few copies, so a
 * nearly balanced placement costs few moves: what a worker death, a join or a load shift should
 * cost.
 */
final class LoadLeveling {
    /** Lighter workers tried as swap partners per step. */
    private static final int SWAP_PARTNERS = 8;
    /** Hottest copies of the heaviest worker, and light workers, tried for a split. */
    private static final int SPLIT_COPIES = 4;
    private static final int SPLIT_PARTNERS = 4;

    private final PlanningProblem p;
    private final Assignment a;
    /** Changes since the last checkpoint, as {expert, worker, +1 added / -1 removed}. */
    private final List<int[]> log = new ArrayList<>();

    private LoadLeveling(PlanningProblem p, Assignment a) {
        this.p = p;
        this.a = a;
    }

    static void level(PlanningProblem p, Assignment a, double target) {
        double mean = p.meanLoad();
        if (mean <= 0) {
            return;
        }
        LoadLeveling leveling = new LoadLeveling(p, a);
        double cap = mean / target;
        long budget = 4L * p.numExperts * p.minReplicas + 1_000;
        for (long step = 0; step < budget; step++) {
            int m = a.heaviest();
            double top = a.load(m);
            if (top <= cap || !leveling.improve(m, top - 1e-9 * top, cap)) {
                return;
            }
        }
    }

    /** Lowers the heaviest worker {@code m} below {@code bound} if some change can; false otherwise. */
    private boolean improve(int m, double bound, double cap) {
        return simpleStep(m, bound, cap) || swap(m, bound) || split(m, bound);
    }

    /**
     * The best single-copy change for {@code m}: preferably one that leaves every other worker it
     * touches at most at {@code cap} (then the one that lowers {@code m} most), otherwise the one
     * that brings the highest touched worker lowest. A change that merely pushes another worker
     * far past the cap (dropping a replica of a hot expert, say) is a dead end the search would not
     * climb out of.
     */
    private boolean simpleStep(int m, double bound, double cap) {
        double lm = a.load(m);
        Choice withinCap = new Choice();
        Choice lowerMax = new Choice();
        for (int y : a.heldBy(m)) {
            double total = p.load[y];
            if (total <= 0) {
                continue;
            }
            int c = a.count(y);
            double share = total / c;
            int w = a.leastLoadedFor(y);
            double rm = p.speed[m];
            if (w >= 0) {
                double rw = p.speed[w];
                consider(withinCap, lowerMax, cap, bound, lm - share / rm, a.load(w) + share / rw, MOVE, y, w);
                double thinner = total / (c + 1);
                consider(withinCap, lowerMax, cap, bound, lm - share / rm + thinner / rm, a.load(w) + thinner / rw, ADD,
                        y, w);
            }
            if (c > p.minReplicas) {
                double thicker = total / (c - 1) - share;
                double others = 0;
                for (int h : a.holders(y)) {
                    if (h != m) {
                        others = Math.max(others, a.load(h) + thicker / p.speed[h]);
                    }
                }
                consider(withinCap, lowerMax, cap, bound, lm - share / rm, others, DROP, y, -1);
            }
        }
        Choice c = withinCap.kind != 0 ? withinCap : lowerMax;
        switch (c.kind) {
            case MOVE -> {
                a.remove(c.expert, m);
                a.add(c.expert, c.worker);
            }
            case ADD -> a.add(c.expert, c.worker);
            case DROP -> a.remove(c.expert, m);
            default -> {
                return false;
            }
        }
        return true;
    }

    private static final int MOVE = 1;
    private static final int ADD = 2;
    private static final int DROP = 3;

    /** The best change found so far of one kind of search. */
    private static final class Choice {
        double score = Double.POSITIVE_INFINITY;
        int kind;
        int expert = -1;
        int worker = -1;

        void offer(double score, int kind, int expert, int worker) {
            if (score < this.score) {
                this.score = score;
                this.kind = kind;
                this.expert = expert;
                this.worker = worker;
            }
        }
    }

    private static void consider(Choice withinCap, Choice lowerMax, double cap, double bound, double mAfter,
            double othersAfter, int kind, int expert, int worker) {
        if (mAfter >= bound) {
            return;
        }
        if (othersAfter <= cap) {
            withinCap.offer(mAfter, kind, expert, worker);
        }
        double highest = Math.max(mAfter, othersAfter);
        if (highest < bound) {
            lowerMax.offer(highest, kind, expert, worker);
        }
    }

    /**
     * Swaps a copy on {@code m} with a lighter copy on one of the lightest workers, choosing the pair
     * whose difference is closest to half the load gap.
     */
    private boolean swap(int m, double bound) {
        double lm = a.load(m);
        int[] mine = a.heldBy(m);
        double best = bound;
        int bestY = -1;
        int bestZ = -1;
        int bestW = -1;
        int tried = 0;
        for (int w : a.lightestFirst()) {
            if (tried++ == SWAP_PARTNERS || w == m) {
                break;
            }
            double gap = lm - a.load(w);
            double rm = p.speed[m];
            double rw = p.speed[w];
            Integer[] theirs = IntStream.of(a.heldBy(w))
                    .filter(z -> !a.holds(m, z))
                    .boxed()
                    .sorted(Comparator.<Integer>comparingDouble(a::share).thenComparingInt(z -> z))
                    .toArray(Integer[]::new);
            double[] shares = Arrays.stream(theirs).mapToDouble(a::share).toArray();
            for (int y : mine) {
                double sy = a.share(y);
                if (sy <= 0 || a.holds(w, y)) {
                    continue;
                }
                // The best partner's share leaves both workers at the same time: sy − gap / (1/rm + 1/rw),
                // sy − gap/2 with equal speeds; look at its neighbours in the sorted shares.
                int i = Arrays.binarySearch(shares, sy - gap / (1 / rm + 1 / rw));
                int at = i >= 0 ? i : -i - 1;
                for (int j = Math.max(0, at - 1); j <= Math.min(shares.length - 1, at); j++) {
                    double sz = shares[j];
                    if (sz >= sy) {
                        continue;
                    }
                    double result = Math.max(lm - sy / rm + sz / rm, a.load(w) + sy / rw - sz / rw);
                    if (result < best) {
                        best = result;
                        bestY = y;
                        bestZ = theirs[j];
                        bestW = w;
                    }
                }
            }
        }
        if (bestY < 0) {
            return false;
        }
        a.remove(bestY, m);
        a.remove(bestZ, bestW);
        a.add(bestY, bestW);
        a.add(bestZ, m);
        return true;
    }

    /**
     * For one of {@code m}'s hottest copies and one of the lightest workers with room: adds a
     * replica there (or moves the copy there), then moves that worker's other copies, largest first,
     * to the least-loaded workers that stay under {@code bound}, until it is under {@code bound}
     * too. Undone unless it succeeds.
     */
    private boolean split(int m, double bound) {
        int[] hottest = IntStream.of(a.heldBy(m))
                .boxed()
                .sorted(Comparator.<Integer>comparingDouble(y -> -a.share(y)).thenComparingInt(y -> y))
                .limit(SPLIT_COPIES)
                .mapToInt(Integer::intValue)
                .toArray();
        for (int y : hottest) {
            if (a.share(y) <= 0) {
                continue;
            }
            double total = p.load[y];
            int c = a.count(y);
            for (boolean replicate : new boolean[] {true, false}) {
                double gain = replicate ? total / (c + 1) : total / c;
                for (int w : splitPartners(y, gain, bound)) {
                    log.clear();
                    if (!replicate) {
                        remove(y, m);
                    }
                    add(y, w);
                    if (shed(w, y, bound) && a.load(m) < bound) {
                        return true;
                    }
                    undo();
                }
            }
        }
        return false;
    }

    /**
     * Workers with room that lack {@code y} and could take {@code gain} more load by shedding
     * copies small enough to fit under {@code bound} on the least-loaded worker; the lightest first.
     */
    private int[] splitPartners(int y, double gain, double bound) {
        var withRoom = a.withRoomLightestFirst().iterator();
        if (!withRoom.hasNext()) {
            return new int[0];
        }
        int lightestWorker = withRoom.next();
        double lightest = a.load(lightestWorker);
        int[] out = new int[SPLIT_PARTNERS];
        int n = 0;
        for (int w : a.withRoomLightestFirst()) {
            if (n == out.length) {
                break;
            }
            if (a.holds(w, y)) {
                continue;
            }
            double sheddable = 0;
            for (int z : a.heldBy(w)) {
                double sz = a.share(z);
                if (lightest + sz / p.speed[lightestWorker] < bound) {
                    sheddable += sz / p.speed[w];
                }
            }
            if (a.load(w) + gain / p.speed[w] - sheddable < bound) {
                out[n++] = w;
            }
        }
        return Arrays.copyOf(out, n);
    }

    /** Moves {@code w}'s copies other than {@code keep}, largest first, until {@code w} is under {@code bound}. */
    private boolean shed(int w, int keep, double bound) {
        while (a.load(w) >= bound) {
            boolean moved = false;
            int[] copies = IntStream.of(a.heldBy(w))
                    .filter(z -> z != keep)
                    .boxed()
                    .sorted(Comparator.<Integer>comparingDouble(z -> -a.share(z)).thenComparingInt(z -> z))
                    .mapToInt(Integer::intValue)
                    .toArray();
            for (int z : copies) {
                double sz = a.share(z);
                if (sz <= 0) {
                    break;
                }
                int u = a.leastLoadedFor(z);
                if (u >= 0 && u != w && a.load(u) + sz / p.speed[u] < bound) {
                    remove(z, w);
                    add(z, u);
                    moved = true;
                    break;
                }
            }
            if (!moved) {
                return false;
            }
        }
        return true;
    }

    private void add(int x, int w) {
        a.add(x, w);
        log.add(new int[] {x, w, 1});
    }

    private void remove(int x, int w) {
        a.remove(x, w);
        log.add(new int[] {x, w, -1});
    }

    private void undo() {
        for (int i = log.size() - 1; i >= 0; i--) {
            int[] op = log.get(i);
            if (op[2] > 0) {
                a.remove(op[0], op[1]);
            } else {
                a.add(op[0], op[1]);
            }
        }
        log.clear();
    }
}
