package dev.moecluster.worker;

import static org.assertj.core.api.Assertions.assertThat;

import dev.moecluster.control.WorkerThroughput;
import dev.moecluster.core.moe.ExpertWeights;
import dev.moecluster.core.tensor.DType;
import dev.moecluster.core.tensor.Tensor;
import java.lang.foreign.Arena;
import java.time.Duration;
import java.util.SplittableRandom;
import java.util.concurrent.atomic.AtomicLong;
import org.junit.jupiter.api.Test;

class ThroughputMeterTest {

    private static ExpertWeights expert(Arena arena, int h, int i) {
        SplittableRandom r = new SplittableRandom(3);
        float[] a = new float[h * i];
        for (int k = 0; k < a.length; k++) {
            a[k] = (float) r.nextGaussian() * 0.1f;
        }
        return new ExpertWeights(Tensor.of(arena, DType.BF16, new long[] {i, h}, a),
                Tensor.of(arena, DType.BF16, new long[] {i, h}, a), Tensor.of(arena, DType.BF16, new long[] {h, i}, a));
    }

    @Test
    void calibratesASmallAndALargeBatchAndGivesTheExpertBack() {
        try (Arena arena = Arena.ofConfined(); CpuBackend cpu = new CpuBackend()) {
            WorkerThroughput t = ThroughputMeter.calibrate(cpu, expert(arena, 32, 48), DType.BF16, Duration.ofMillis(100));

            assertThat(t.smallBatchRows()).isEqualTo(ThroughputMeter.SMALL_BATCH_ROWS);
            assertThat(t.largeBatchRows()).isEqualTo(ThroughputMeter.LARGE_BATCH_ROWS);
            assertThat(t.smallBatchRowsPerSecond()).isPositive();
            assertThat(t.largeBatchRowsPerSecond()).isPositive();
            assertThat(t.planningRowsPerSecond()).isEqualTo(t.largeBatchRowsPerSecond());
            assertThat(t.fixed()).isFalse();
            assertThat(cpu.memory().experts()).as("the calibration expert is unloaded").isZero();
        }
    }

    @Test
    void liveRateIsMeasuredOnceEnoughRowsWereServedAndIsAveraged() {
        AtomicLong rows = new AtomicLong();
        AtomicLong busy = new AtomicLong();
        WorkerThroughput calibrated = new WorkerThroughput(4, 100, 256, 900, 0, 0, false);
        ThroughputMeter meter = new ThroughputMeter(calibrated, rows::get, busy::get);

        assertThat(meter.current().planningRowsPerSecond()).isEqualTo(900);
        rows.set(ThroughputMeter.LIVE_MIN_ROWS - 1);
        busy.set(1_000_000_000L);
        assertThat(meter.current().liveRowsPerSecond()).as("too few rows yet").isZero();
        rows.set(2_000);
        busy.set(2_000_000_000L); // 2,000 rows in 2 s
        assertThat(meter.current().liveRowsPerSecond()).isEqualTo(1_000);
        rows.set(5_000);
        busy.set(2_500_000_000L); // 3,000 rows in 0.5 s: 6,000 rows/s, averaged with 1,000
        WorkerThroughput now = meter.current();
        assertThat(now.liveRowsPerSecond()).isEqualTo(3_500);
        assertThat(now.planningRowsPerSecond()).as("the planner takes the calibration").isEqualTo(900);
        assertThat(now.liveRows()).isEqualTo(5_000);
        assertThat(now.largeBatchRowsPerSecond()).isEqualTo(900);
    }

    @Test
    void aFixedFigureStays() {
        AtomicLong rows = new AtomicLong(10_000);
        AtomicLong busy = new AtomicLong(1_000_000_000L);
        ThroughputMeter meter = new ThroughputMeter(WorkerThroughput.fixed(50_000), rows::get, busy::get);

        assertThat(meter.current().planningRowsPerSecond()).isEqualTo(50_000);
    }
}
