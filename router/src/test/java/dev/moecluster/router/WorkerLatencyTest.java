package dev.moecluster.router;

import static org.assertj.core.api.Assertions.assertThat;

import org.junit.jupiter.api.Test;

/** The router's latency estimates: per worker for replica choice, over all workers for when to hedge. */
class WorkerLatencyTest {
    private static final long MS = 1_000_000;

    @Test
    void expectedTimeScalesWithQueuedRowsAndFadesWithoutSamples() {
        WorkerLatency latency = new WorkerLatency();
        assertThat(latency.expectedNanos("new:1", 0, 8, 0)).as("never measured: try it").isZero();
        latency.record("w:1", 8, 10 * MS, 1_000);
        assertThat(latency.expectedNanos("w:1", 0, 8, 1_000)).isEqualTo(10 * MS);
        assertThat(latency.expectedNanos("w:1", 24, 8, 1_000)).as("four batches' worth in line").isEqualTo(40 * MS);
        assertThat(latency.expectedNanos("w:1", 0, 8, 1_000 + WorkerLatency.FADE_HALF_LIFE_NANOS)).isEqualTo(5 * MS);
        latency.record("w:1", 8, 20 * MS, 2_000);
        assertThat(latency.expectedNanos("w:1", 0, 8, 2_000)).as("moving average, new sample weighted 0.2").isEqualTo(12 * MS);
    }

    @Test
    void hedgesAfterThe95thPercentileOnceThereAreEnoughSamples() {
        WorkerLatency latency = new WorkerLatency();
        for (int i = 1; i < WorkerLatency.MIN_SAMPLES_TO_HEDGE; i++) {
            latency.record("w:1", 1, i * MS, i);
        }
        assertThat(latency.hedgeAfterNanos(100)).isEqualTo(-1);
        for (int i = WorkerLatency.MIN_SAMPLES_TO_HEDGE; i <= 100; i++) {
            latency.record("w:1", 1, i * MS, i);
        }
        assertThat(latency.hedgeAfterNanos(100)).isEqualTo(95 * MS);
    }

    @Test
    void aFailedBatchCountsAgainstItsWorkerButNotForHedging() {
        WorkerLatency latency = new WorkerLatency();
        latency.record("w:1", 8, 2 * MS, 0);
        latency.recordFailure("w:1", 8, 502 * MS, 0);
        assertThat(latency.expectedNanos("w:1", 0, 8, 0)).isEqualTo(102 * MS);
        for (int i = 0; i < WorkerLatency.MIN_SAMPLES_TO_HEDGE - 1; i++) {
            latency.recordFailure("w:1", 8, 500 * MS, 0);
        }
        assertThat(latency.hedgeAfterNanos(0)).as("one answered sample").isEqualTo(-1);
    }

    @Test
    void oldSamplesStopCountingForTheHedgingPercentile() {
        WorkerLatency latency = new WorkerLatency();
        long start = 1_000;
        for (int i = 0; i < 10; i++) {
            latency.record("w:1", 1, 900 * MS, start + i); // a cold start
        }
        long later = start + (WorkerLatency.RECENT_WINDOW_SECONDS + 1) * 1_000 * MS;
        for (int i = 0; i < 100; i++) {
            latency.record("w:1", 1, 2 * MS, later + i);
        }
        assertThat(latency.hedgeAfterNanos(later + 100)).isEqualTo(2 * MS);
    }
}
