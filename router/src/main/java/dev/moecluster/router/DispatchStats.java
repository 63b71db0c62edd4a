package dev.moecluster.router;

import io.prometheus.metrics.core.metrics.Counter;
import io.prometheus.metrics.core.metrics.Histogram;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.LongAdder;

/**
 * Counters of what the dispatcher sent where: rows routed per (layer, expert), batches, bytes on the
 * wire each way (serialized message sizes), failovers, and the time each worker took to answer a batch.
 * Read by the demo's table and by {@link RouterMetrics}.
 */
public final class DispatchStats {
    private final Map<Long, LongAdder> rowsByExpert = new ConcurrentHashMap<>();
    private final LongAdder rows = new LongAdder();
    private final LongAdder batches = new LongAdder();
    private final LongAdder bytesSent = new LongAdder();
    private final LongAdder bytesReceived = new LongAdder();
    private final LongAdder failovers = new LongAdder();
    private final Map<String, WorkerHealth> health = new ConcurrentHashMap<>();
    // Labelled by the worker whose batch failed (bounded by the placement's workers).
    private final Counter failoversByWorker = Counter.builder()
            .name("moe_router_failovers_total")
            .help("Worker batches resent to a replica, by the worker that failed or missed its deadline")
            .labelNames("worker")
            .build();
    // Labelled by outcome: bounded (hedge, primary, neither).
    private final Counter hedges = Counter.builder()
            .name("moe_router_hedged_batches_total")
            .help("Batches resent to other replicas because they were slower than 95 % of recent batches, by which copy answered first")
            .labelNames("first")
            .build();
    /** Which copy of a hedged batch answered first. */
    private static final List<String> HEDGE_OUTCOMES = List.of("hedge", "primary", "neither");

    {
        for (String first : HEDGE_OUTCOMES) {
            hedges.labelValues(first); // every outcome exported from the start, at 0
        }
    }
    // Labelled by worker address: bounded by the placement's workers.
    private final Histogram workerLatency = Histogram.builder()
            .name("moe_router_dispatch_duration_seconds")
            .help("Time from sending a batch to a worker until its result or failure, per worker")
            .labelNames("worker")
            .classicOnly()
            .build();

    void recordRows(int layer, int expert, int count) {
        rowsByExpert.computeIfAbsent((long) layer << 32 | expert, k -> new LongAdder()).add(count);
        rows.add(count);
    }

    void recordBatch(long sent, long received) {
        batches.increment();
        bytesSent.add(sent);
        bytesReceived.add(received);
    }

    void recordWorkerLatency(String worker, long nanos) {
        workerLatency.labelValues(worker).observe(nanos / 1e9);
    }

    /** Per-worker batch latency, registered by {@link RouterMetrics}. */
    Histogram workerLatency() {
        return workerLatency;
    }

    /** A worker the router dials: its failover series starts at 0, so rates and alerts see the first one. */
    void knowWorker(String worker) {
        failoversByWorker.labelValues(worker);
    }

    void recordFailover(String worker) {
        failovers.increment();
        failoversByWorker.labelValues(worker).inc();
    }

    /** A worker answered a batch ({@code answered}), or it failed or missed its deadline. */
    void recordOutcome(String worker, boolean answered) {
        WorkerHealth h = health(worker);
        if (answered) {
            h.answers.increment();
            h.failingStreak.set(0);
        } else {
            h.failures.increment();
            h.failingStreak.incrementAndGet();
        }
    }

    /** The worker answered something after all (a batch counted as overdue, or a withdrawal): it is alive. */
    void recordLateAnswer(String worker) {
        health(worker).failingStreak.set(0);
    }

    /** Drops what the router knows of a worker's health, e.g. when the placement no longer names it. */
    void forgetWorkerHealth(String worker) {
        health.remove(worker);
    }

    private WorkerHealth health(String worker) {
        return health.computeIfAbsent(worker, k -> new WorkerHealth());
    }

    /**
     * Batches failed and answered per worker since the previous call, and failed since the worker's
     * last answer, for the coordinators: a worker whose batches all fail while its heartbeats go on is
     * a gray failure only routers can see.
     */
    public Map<String, long[]> takeWorkerHealth() {
        Map<String, long[]> out = new TreeMap<>();
        health.forEach((worker, h) -> {
            long failures = h.failures.sumThenReset();
            long answers = h.answers.sumThenReset();
            long streak = h.failingStreak.get();
            if (failures + answers + streak > 0) {
                out.put(worker, new long[] {failures, answers, streak});
            }
        });
        return out;
    }

    private static final class WorkerHealth {
        final LongAdder failures = new LongAdder();
        final LongAdder answers = new LongAdder();
        final java.util.concurrent.atomic.AtomicLong failingStreak = new java.util.concurrent.atomic.AtomicLong();
    }

    /** A slow batch was hedged; {@code first} is hedge, primary or neither (both failed). */
    void recordHedge(String first) {
        hedges.labelValues(first).inc();
    }

    /** Hedged batches by outcome, registered by {@link RouterMetrics}. */
    Counter hedges() {
        return hedges;
    }

    /** Batches hedged so far, whichever copy answered first. */
    public long hedged() {
        return HEDGE_OUTCOMES.stream().mapToLong(first -> (long) hedges.labelValues(first).get()).sum();
    }

    /** Hedged batches whose hedge answered first. */
    public long hedgesWon() {
        return (long) hedges.labelValues("hedge").get();
    }

    /** Failovers per failed worker, registered by {@link RouterMetrics}. */
    Counter failoversByWorker() {
        return failoversByWorker;
    }

    /** Rows (token-expert pairs) routed so far, per layer then expert. */
    public Map<Integer, Map<Integer, Long>> rowsByLayerAndExpert() {
        Map<Integer, Map<Integer, Long>> out = new TreeMap<>();
        rowsByExpert.forEach((k, v) -> out.computeIfAbsent((int) (k >>> 32), l -> new TreeMap<>()).put((int) (long) k, v.sum()));
        return out;
    }

    /** Routed rows: one per token and chosen expert. */
    public long rows() {
        return rows.sum();
    }

    public long batches() {
        return batches.sum();
    }

    public long bytesSent() {
        return bytesSent.sum();
    }

    public long bytesReceived() {
        return bytesReceived.sum();
    }

    /** Worker batches resent to a replica after a failure or deadline. */
    public long failovers() {
        return failovers.sum();
    }
}
