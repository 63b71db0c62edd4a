package dev.moecluster.coordinator;

import static java.util.Objects.requireNonNull;

/**
 * A live worker as the placement planner sees it: its id (the {@code host:port} the placement
 * names), the memory it may fill with experts, whether it is draining (holds nothing in the next
 * placement), and how fast it computes expert rows (0 when it has not said: the planner then
 * assumes the slowest known speed).
 *
 * @param rowsPerSecond expert rows (one row through one expert) the worker computes per second
 */
public record WorkerCapacity(String id, long memoryBytes, boolean draining, double rowsPerSecond) {
    public WorkerCapacity {
        requireNonNull(id, "id is null");
        if (id.isBlank()) {
            throw new IllegalArgumentException("worker id is blank");
        }
        if (memoryBytes < 0) {
            throw new IllegalArgumentException("worker " + id + " has negative memory " + memoryBytes);
        }
        if (!(rowsPerSecond >= 0) || Double.isInfinite(rowsPerSecond)) {
            throw new IllegalArgumentException("worker " + id + " has throughput " + rowsPerSecond
                    + " rows/s; it must be finite and at least 0 (0: unknown)");
        }
    }

    /** A worker of unknown speed. */
    public WorkerCapacity(String id, long memoryBytes, boolean draining) {
        this(id, memoryBytes, draining, 0);
    }

    /** A worker that takes experts. */
    public static WorkerCapacity of(String id, long memoryBytes) {
        return new WorkerCapacity(id, memoryBytes, false);
    }

    public WorkerCapacity withDraining(boolean draining) {
        return new WorkerCapacity(id, memoryBytes, draining, rowsPerSecond);
    }

    public WorkerCapacity withMemoryBytes(long memoryBytes) {
        return new WorkerCapacity(id, memoryBytes, draining, rowsPerSecond);
    }

    public WorkerCapacity withRowsPerSecond(double rowsPerSecond) {
        return new WorkerCapacity(id, memoryBytes, draining, rowsPerSecond);
    }
}
