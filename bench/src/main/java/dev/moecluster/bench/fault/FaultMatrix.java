package dev.moecluster.bench.fault;

import dev.moecluster.core.placement.ExpertPlacement;
import java.io.PrintStream;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import org.HdrHistogram.Histogram;

/**
 * Runs faults one after another on a {@link FaultCluster} under {@link SteadyTraffic} and measures
 * each: failed calls, latency before, during and after, when latency came back, when the victim's
 * experts were placed elsewhere, and what the coordinators saw (how many led at once, which healthy
 * workers they declared dead or suspect).
 */
public final class FaultMatrix {
    /** Seconds measured before the fault, with the fault in place, and after the repair. */
    public record Timing(int beforeSeconds, int faultSeconds, int afterSeconds) {}

    /** Calls in one window of time and their latency in microseconds. */
    public record Phase(int calls, int failed, long p50Micros, long p99Micros) {
        static Phase of(List<SteadyTraffic.Call> calls) {
            Histogram h = new Histogram(3);
            int failed = 0;
            for (SteadyTraffic.Call c : calls) {
                if (c.error() != null) {
                    failed++;
                } else {
                    h.recordValue(Math.max(1, c.micros()));
                }
            }
            return new Phase(calls.size(), failed, h.getTotalCount() == 0 ? 0 : h.getValueAtPercentile(50),
                    h.getTotalCount() == 0 ? 0 : h.getValueAtPercentile(99));
        }

        String latency() {
            return String.format("%.1f/%.1f", p50Micros / 1000.0, p99Micros / 1000.0);
        }
    }

    /**
     * What one fault did.
     *
     * @param recoveredSeconds from the injection to the start of the first 1 s window after which every
     *     window has no failed call and a p99 within 3× the p99 before; NaN when that never happened
     * @param replacedSeconds from the injection until the leader's placement gave the victim worker no
     *     experts; NaN when it kept them (or the fault hit a coordinator)
     * @param mostLeaders the most coordinators that said they led at one time
     * @param wronglyDeclared workers other than the victim that some coordinator saw in a state other
     *     than ACTIVE during the fault or after it
     */
    public record Result(Fault fault, String victim, Phase before, Phase during, Phase after, List<String> errors,
            double recoveredSeconds, double replacedSeconds, int mostLeaders, Set<String> wronglyDeclared,
            List<String> coordinatorsAfter) {
        public int failed() {
            return before.failed() + during.failed() + after.failed();
        }

        /** The fault's p99 over the steady p99 before it. */
        public double p99Ratio() {
            return before.p99Micros() == 0 ? Double.NaN : (double) during.p99Micros() / before.p99Micros();
        }
    }

    private final FaultCluster cluster;
    private final SteadyTraffic traffic;
    private final Timing timing;
    private final PrintStream progress;

    public FaultMatrix(FaultCluster cluster, SteadyTraffic traffic, Timing timing, PrintStream progress) {
        this.cluster = cluster;
        this.traffic = traffic;
        this.timing = timing;
        this.progress = progress;
    }

    /** Settles the cluster, then injects, holds, repairs and measures one fault. */
    public Result run(Fault fault) throws Exception {
        cluster.awaitSteady(180);
        sleepSeconds(timing.beforeSeconds());
        long injectedAt = System.nanoTime();
        Fault.Injected injected = fault.inject(cluster);
        progress.printf("  %s on %s: %s%n", fault.label(), injected.node(), fault.description());
        Watch watch = new Watch(injected, injectedAt);
        long repairAt = injectedAt + TimeUnit.SECONDS.toNanos(timing.faultSeconds());
        watch.until(repairAt);
        injected.repair().run();
        long repairedAt = System.nanoTime();
        watch.until(repairedAt + TimeUnit.SECONDS.toNanos(timing.afterSeconds()));
        long end = System.nanoTime();

        Phase before = Phase.of(traffic.between(injectedAt - TimeUnit.SECONDS.toNanos(timing.beforeSeconds()), injectedAt));
        List<SteadyTraffic.Call> duringCalls = traffic.between(injectedAt, repairedAt);
        List<SteadyTraffic.Call> afterCalls = traffic.between(repairedAt, end);
        Set<String> errors = new LinkedHashSet<>();
        for (SteadyTraffic.Call c : traffic.between(injectedAt - TimeUnit.SECONDS.toNanos(timing.beforeSeconds()), end)) {
            if (c.error() != null && errors.size() < 5) {
                errors.add(c.error());
            }
        }
        double recovered = recovered(injectedAt, end, before.p99Micros());
        List<String> view = cluster.views().stream().map(FaultCluster.CoordinatorView::summary).toList();
        return new Result(fault, injected.node(), before, Phase.of(duringCalls), Phase.of(afterCalls), List.copyOf(errors),
                recovered, watch.replacedSeconds, watch.mostLeaders, watch.wronglyDeclared, view);
    }

    /** See {@link Result#recoveredSeconds}. */
    private double recovered(long from, long to, long steadyP99) {
        long window = TimeUnit.SECONDS.toNanos(1);
        double recoveredAt = 0;
        for (long t = from; t < to; t += window) {
            Phase p = Phase.of(traffic.between(t, Math.min(t + window, to)));
            if (p.calls() > 0 && (p.failed() > 0 || p.p99Micros() > 3 * steadyP99)) {
                recoveredAt = (t + window - from) / 1e9;
            }
        }
        return recoveredAt * 1e9 + from >= to ? Double.NaN : recoveredAt;
    }

    /** Polls the coordinators twice a second while a fault runs and after. */
    private final class Watch {
        private final Fault.Injected injected;
        private final long injectedAt;
        double replacedSeconds = Double.NaN;
        int mostLeaders;
        final Set<String> wronglyDeclared = new LinkedHashSet<>();

        Watch(Fault.Injected injected, long injectedAt) {
            this.injected = injected;
            this.injectedAt = injectedAt;
        }

        void until(long deadline) throws InterruptedException {
            while (System.nanoTime() < deadline) {
                long t0 = System.nanoTime();
                List<FaultCluster.CoordinatorView> views = cluster.views();
                mostLeaders = Math.max(mostLeaders, (int) views.stream().filter(FaultCluster.CoordinatorView::leading).count());
                for (FaultCluster.CoordinatorView v : views) {
                    v.workerStates().forEach((address, state) -> {
                        if (!address.equals(injected.worker()) && !state.equals("ACTIVE")) {
                            wronglyDeclared.add(address + " " + state + " (seen by " + v.node() + ")");
                        }
                    });
                }
                if (injected.worker() != null && Double.isNaN(replacedSeconds)) {
                    ExpertPlacement p = cluster.placement();
                    if (p != null && !FaultCluster.holdsExperts(p, injected.worker())) {
                        replacedSeconds = (System.nanoTime() - injectedAt) / 1e9;
                    }
                }
                long rest = TimeUnit.MILLISECONDS.toNanos(500) - (System.nanoTime() - t0);
                if (rest > 0) {
                    TimeUnit.NANOSECONDS.sleep(Math.min(rest, Math.max(0, deadline - System.nanoTime())));
                }
            }
        }
    }

    /** Prints the results as a table, then each fault's errors and the coordinators' view after it. */
    public static void print(List<Result> results, PrintStream out) {
        out.printf("%-20s %-7s %6s %6s  %-14s %-14s %-14s %6s %9s %9s %7s  %s%n", "fault", "victim", "calls", "failed",
                "before p50/99", "during p50/99", "after p50/99", "p99 ×", "recovered", "re-placed", "leaders",
                "healthy workers declared");
        for (Result r : results) {
            int calls = r.before().calls() + r.during().calls() + r.after().calls();
            out.printf("%-20s %-7s %6d %6d  %-14s %-14s %-14s %6s %9s %9s %7d  %s%n", r.fault().label(), r.victim(), calls,
                    r.failed(), r.before().latency(), r.during().latency(), r.after().latency(),
                    Double.isNaN(r.p99Ratio()) ? "-" : String.format("%.1f", r.p99Ratio()), seconds(r.recoveredSeconds()),
                    seconds(r.replacedSeconds()), r.mostLeaders(), r.wronglyDeclared().isEmpty() ? "none" : String.join("; ", r.wronglyDeclared()));
        }
        out.println("(latencies in ms; p99 × = p99 during the fault over p99 before; recovered = seconds from the fault to"
                + " the last 1 s window with a failure or a p99 above 3× steady; re-placed = seconds until the leader's placement"
                + " gave the victim no experts; leaders = most coordinators leading at once)");
        for (Result r : results) {
            Map<String, Object> lines = new LinkedHashMap<>();
            if (!r.errors().isEmpty()) {
                lines.put("errors", String.join(" | ", r.errors()));
            }
            lines.put("coordinators after", String.join("; ", r.coordinatorsAfter()));
            lines.forEach((k, v) -> out.printf("%s %s: %s%n", r.fault().label(), k, v));
        }
    }

    private static String seconds(double s) {
        return Double.isNaN(s) ? "-" : String.format("%.1f s", s);
    }

    private static void sleepSeconds(int s) throws InterruptedException {
        Thread.sleep(s * 1000L);
    }

    /** Runs {@code faults} in order and returns their results. */
    public List<Result> runAll(List<Fault> faults) throws Exception {
        List<Result> results = new ArrayList<>();
        for (Fault f : faults) {
            progress.printf("fault %d/%d: %s%n", results.size() + 1, faults.size(), f.label());
            Result r = run(f);
            progress.printf("  %d failed of %d calls; p99 %.1f ms before, %.1f ms during; victim's experts re-placed: %s;"
                    + " most leaders at once: %d%n", r.failed(), r.before().calls() + r.during().calls() + r.after().calls(),
                    r.before().p99Micros() / 1000.0, r.during().p99Micros() / 1000.0, seconds(r.replacedSeconds()), r.mostLeaders());
            results.add(r);
        }
        return results;
    }
}
