package dev.moecluster.worker;

/**
 * A backend's memory for expert weights: what its experts hold and what it could hold in all. A
 * {@code cuda} backend's capacity is the device's memory less a reserve for batch buffers; the
 * {@code cpu} backend's is unknown ({@code -1}): the worker's {@code --memory-budget} says it.
 *
 * @param usedBytes bytes of expert weights the backend holds
 * @param capacityBytes bytes of expert weights it could hold, or -1 when it cannot tell
 * @param experts experts loaded
 */
public record BackendMemory(long usedBytes, long capacityBytes, int experts) {
    /** The budget to report: the backend's capacity, or {@code configured} when that is set and smaller. */
    public long budget(long configured) {
        if (capacityBytes < 0) {
            return configured;
        }
        return configured > 0 ? Math.min(configured, capacityBytes) : capacityBytes;
    }
}
