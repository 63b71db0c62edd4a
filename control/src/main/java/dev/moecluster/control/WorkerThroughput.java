package dev.moecluster.control;

/**
 * How fast a worker computes expert rows (one row through one expert's FFN), as it reports it: a
 * calibration at start on its real expert shape at a small and a large batch, and the rate its
 * rounds have run at lately. The planner balances time with {@link #planningRowsPerSecond()}.
 *
 * @param smallBatchRows rows per call of the small-batch calibration (decode-shaped)
 * @param smallBatchRowsPerSecond rows/s measured at {@code smallBatchRows}; 0 when not measured
 * @param largeBatchRows rows per call of the large-batch calibration
 * @param largeBatchRowsPerSecond rows/s measured at {@code largeBatchRows}; 0 when not measured
 * @param liveRowsPerSecond rows / compute seconds of the rounds served lately; 0 until enough rows
 * @param liveRows rows served since start
 * @param fixed the figure was given on the command line ({@code --throughput-rows-per-s}), not measured
 */
public record WorkerThroughput(int smallBatchRows, double smallBatchRowsPerSecond, int largeBatchRows,
        double largeBatchRowsPerSecond, double liveRowsPerSecond, long liveRows, boolean fixed) {
    public WorkerThroughput {
        for (double v : new double[] {smallBatchRowsPerSecond, largeBatchRowsPerSecond, liveRowsPerSecond}) {
            if (!(v >= 0) || Double.isInfinite(v)) {
                throw new IllegalArgumentException("throughput must be finite and at least 0, got " + v);
            }
        }
    }

    /** A figure given, not measured: every field that figure, and it never changes. */
    public static WorkerThroughput fixed(double rowsPerSecond) {
        return new WorkerThroughput(0, rowsPerSecond, 0, rowsPerSecond, 0, 0, true);
    }

    /** No figure: the planner treats the worker as of the slowest known speed. */
    public static WorkerThroughput unknown() {
        return new WorkerThroughput(0, 0, 0, 0, 0, 0, false);
    }

    /**
     * The speed to plan with: the large-batch calibration, else the small-batch one; 0 when
     * unknown. The live rate is reported beside it but not planned with: it is measured at whatever
     * batch sizes the traffic brings, and on small models it differed from like workers'
     * calibrations by more than the noise the coordinator's speed classes absorb, so like workers
     * (one just joined, others serving) looked unlike and the joiner got no experts.
     */
    public double planningRowsPerSecond() {
        return largeBatchRowsPerSecond > 0 ? largeBatchRowsPerSecond : smallBatchRowsPerSecond;
    }

    /** The same calibration with a new live rate. */
    public WorkerThroughput withLive(double rowsPerSecond, long rows) {
        return new WorkerThroughput(smallBatchRows, smallBatchRowsPerSecond, largeBatchRows, largeBatchRowsPerSecond,
                rowsPerSecond, rows, fixed);
    }
}
