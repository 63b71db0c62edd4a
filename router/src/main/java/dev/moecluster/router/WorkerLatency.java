package dev.moecluster.router;

import java.util.Arrays;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;

/**
 * How long workers take to answer a batch, as the router observed it: per worker a moving average of
 * the latency and of the batch size (so the dispatcher can estimate when a new batch would come back
 * from each replica), and over all workers the recent latencies whose 95th percentile decides when a
 * batch is slow enough to hedge (those of the last {@value #RECENT_WINDOW_SECONDS} s, so a start's cold
 * batches stop counting). A worker's estimate fades while it gets no batches, so a replica that was
 * avoided for being slow is tried again and judged afresh.
 */
final class WorkerLatency {
    /** Weight of a new sample in the moving averages. */
    private static final double ALPHA = 0.2;
    /** A worker's latency estimate halves every this long without a sample. */
    static final long FADE_HALF_LIFE_NANOS = 5_000_000_000L;
    /** Recent latencies over all workers kept for the hedging percentile. */
    private static final int RECENT = 256;
    /** No hedging before this many recent samples: the percentile would be noise. */
    static final int MIN_SAMPLES_TO_HEDGE = 32;
    /** Samples older than this do not count for the hedging percentile. */
    static final long RECENT_WINDOW_SECONDS = 30;

    private final Map<String, Estimate> workers = new ConcurrentHashMap<>();
    private final long[] recent = new long[RECENT];
    private final long[] recentAt = new long[RECENT];
    private long samples;

    private static final class Estimate {
        double nanos;
        double rows;
        long lastSample;
        boolean measured;
    }

    /** A batch of {@code rows} rows answered by {@code address} after {@code nanos}. */
    void record(String address, int rows, long nanos, long now) {
        estimate(address, rows, nanos, now);
        synchronized (recent) {
            int slot = (int) (samples++ % RECENT);
            recent[slot] = nanos;
            recentAt[slot] = now;
        }
    }

    /**
     * A batch that failed or missed its deadline after {@code nanos}: it counts against the worker's
     * estimate (so its rows go elsewhere until the estimate fades) but not toward the hedging percentile.
     */
    void recordFailure(String address, int rows, long nanos, long now) {
        estimate(address, rows, nanos, now);
    }

    private void estimate(String address, int rows, long nanos, long now) {
        Estimate e = workers.computeIfAbsent(address, k -> new Estimate());
        synchronized (e) {
            e.nanos = e.measured ? e.nanos + ALPHA * (nanos - e.nanos) : nanos;
            e.rows = e.measured ? e.rows + ALPHA * (rows - e.rows) : rows;
            e.lastSample = now;
            e.measured = true;
        }
    }

    /**
     * When a batch of {@code rows} rows sent now to {@code address} would come back, with
     * {@code rowsAhead} rows already queued there: its average latency per average batch, scaled by the
     * rows in line. 0 for a worker never measured (so it gets measured).
     */
    long expectedNanos(String address, long rowsAhead, long rows, long now) {
        Estimate e = workers.get(address);
        if (e == null) {
            return 0;
        }
        double nanos;
        double perBatch;
        long age;
        synchronized (e) {
            nanos = e.nanos;
            perBatch = Math.max(1, e.rows);
            age = now - e.lastSample;
        }
        double faded = nanos * Math.pow(0.5, (double) age / FADE_HALF_LIFE_NANOS);
        return (long) (faded * Math.max(1.0, (rowsAhead + rows) / perBatch));
    }

    /** The 95th percentile of the recent batch latencies at {@code now}, or -1 while there are too few to tell. */
    long hedgeAfterNanos(long now) {
        long[] copy = new long[RECENT];
        int n = 0;
        synchronized (recent) {
            for (int i = 0; i < Math.min(samples, RECENT); i++) {
                if (now - recentAt[i] <= RECENT_WINDOW_SECONDS * 1_000_000_000L) {
                    copy[n++] = recent[i];
                }
            }
        }
        if (n < MIN_SAMPLES_TO_HEDGE) {
            return -1;
        }
        Arrays.sort(copy, 0, n);
        return copy[(int) Math.min(n - 1, Math.ceil(n * 0.95) - 1)];
    }
}
