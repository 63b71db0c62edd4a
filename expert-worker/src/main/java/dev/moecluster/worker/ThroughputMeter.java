package dev.moecluster.worker;

import dev.moecluster.control.WorkerThroughput;
import dev.moecluster.core.moe.ExpertWeights;
import dev.moecluster.core.tensor.DType;
import dev.moecluster.core.tensor.RowBatch;
import java.lang.foreign.Arena;
import java.time.Duration;
import java.util.List;
import java.util.Random;
import java.util.function.LongSupplier;
import java.util.logging.Logger;

/**
 * How fast this worker computes expert rows, for the coordinator's planner: a short calibration of
 * the backend at start (one expert of the model's real shape, a decode-sized and a prefill-sized
 * batch), and the rows its rounds compute per second of backend time while it serves (reported
 * beside the calibration; the planner takes the calibration).
 */
final class ThroughputMeter {
    private static final Logger LOG = Logger.getLogger(ThroughputMeter.class.getName());
    /** Rows per call of the decode-shaped calibration. */
    static final int SMALL_BATCH_ROWS = 4;
    /** Rows per call of the prefill-shaped calibration. */
    static final int LARGE_BATCH_ROWS = 256;
    /** Rows served between two live readings before they replace the one before. */
    static final long LIVE_MIN_ROWS = 1024;
    /** Calls per batch size at most; the time budget usually ends calibration first. */
    private static final int MAX_CALLS = 1000;

    private final WorkerThroughput calibrated;
    private final LongSupplier rows;
    private final LongSupplier busyNanos;
    private long lastRows;
    private long lastBusyNanos;
    private double live;

    /**
     * @param calibrated what {@link #calibrate} measured, or a fixed or unknown figure
     * @param rows rows computed since start
     * @param busyNanos backend time since start
     */
    ThroughputMeter(WorkerThroughput calibrated, LongSupplier rows, LongSupplier busyNanos) {
        this.calibrated = calibrated;
        this.rows = rows;
        this.busyNanos = busyNanos;
    }

    /**
     * The calibration with the live rate folded in: the rate since the last reading once at least
     * {@link #LIVE_MIN_ROWS} rows were served since, averaged with the one before so one odd
     * interval does not swing the planner.
     */
    synchronized WorkerThroughput current() {
        long r = rows.getAsLong();
        long b = busyNanos.getAsLong();
        long dr = r - lastRows;
        long db = b - lastBusyNanos;
        if (dr >= LIVE_MIN_ROWS && db > 0) {
            double rate = dr / (db / 1e9);
            live = live == 0 ? rate : (live + rate) / 2;
            lastRows = r;
            lastBusyNanos = b;
        }
        return calibrated.withLive(live, r);
    }

    /**
     * Times {@code backend} on {@code expert} (loaded for the calibration and unloaded after) at
     * {@link #SMALL_BATCH_ROWS} and {@link #LARGE_BATCH_ROWS} rows of {@code wire} activations: one
     * warm-up call, then calls until {@code budget} / 2 has passed for each size (at least one).
     */
    static WorkerThroughput calibrate(ExpertBackend backend, ExpertWeights expert, DType wire, Duration budget) {
        backend.load(expert);
        try (Arena arena = Arena.ofConfined()) {
            double small = rowsPerSecond(backend, expert, wire, SMALL_BATCH_ROWS, budget.toNanos() / 2, arena);
            double large = rowsPerSecond(backend, expert, wire, LARGE_BATCH_ROWS, budget.toNanos() / 2, arena);
            WorkerThroughput t = new WorkerThroughput(SMALL_BATCH_ROWS, small, LARGE_BATCH_ROWS, large, 0, 0, false);
            LOG.info(() -> String.format(java.util.Locale.ROOT,
                    "backend %s calibrated on a %d × %d expert: %.0f rows/s at %d rows, %.0f rows/s at %d rows",
                    backend.name(), expert.hiddenSize(), expert.intermediateSize(), small, SMALL_BATCH_ROWS, large,
                    LARGE_BATCH_ROWS));
            return t;
        } finally {
            backend.unload(expert);
        }
    }

    private static double rowsPerSecond(ExpertBackend backend, ExpertWeights expert, DType wire, int rows, long nanos,
            Arena arena) {
        int h = expert.hiddenSize();
        RowBatch input = RowBatch.allocate(arena, wire, rows, h);
        RowBatch output = RowBatch.allocate(arena, wire, rows, h);
        Random random = new Random(rows);
        float[] row = new float[h];
        for (int r = 0; r < rows; r++) {
            for (int c = 0; c < h; c++) {
                row[c] = (float) random.nextGaussian();
            }
            input.putRow(r, row, 0, 1f);
        }
        Round round = new Round(List.of(new Round.Slice(expert, input, output)));
        backend.compute(round); // warm-up: first-call costs are not the speed
        long start = System.nanoTime();
        long elapsed;
        int calls = 0;
        do {
            backend.compute(round);
            calls++;
            elapsed = System.nanoTime() - start;
        } while (elapsed < nanos && calls < MAX_CALLS);
        return (double) rows * calls / (Math.max(1, elapsed) / 1e9);
    }
}
