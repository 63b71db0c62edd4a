package dev.moecluster.coordinator;

import static java.util.Objects.requireNonNull;

/**
 * A live worker as the placement planner sees it: its id (the {@code host:port} the placement
 * names), the memory it may fill with experts, and whether it is draining (holds nothing in the
 * next placement).
 */
public record WorkerCapacity(String id, long memoryBytes, boolean draining) {
    public WorkerCapacity {
        requireNonNull(id, "id is null");
        if (id.isBlank()) {
            throw new IllegalArgumentException("worker id is blank");
        }
        if (memoryBytes < 0) {
            throw new IllegalArgumentException("worker " + id + " has negative memory " + memoryBytes);
        }
    }

    /** A worker that takes experts. */
    public static WorkerCapacity of(String id, long memoryBytes) {
        return new WorkerCapacity(id, memoryBytes, false);
    }

    public WorkerCapacity withDraining(boolean draining) {
        return new WorkerCapacity(id, memoryBytes, draining);
    }

    public WorkerCapacity withMemoryBytes(long memoryBytes) {
        return new WorkerCapacity(id, memoryBytes, draining);
    }
}
