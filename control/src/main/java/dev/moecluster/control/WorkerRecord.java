package dev.moecluster.control;

import static java.util.Objects.requireNonNull;

import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.TreeSet;

/**
 * What the registry knows about a worker.
 *
 * @param address {@code host:port} of its ExpertService
 * @param memoryBytes memory budget for expert weights
 * @param held experts loaded now, by layer (the acknowledgement of its assignment)
 * @param heldEpoch the assignment epoch {@code held} corresponds to
 * @param heartbeatMillis wall-clock time of the last heartbeat
 * @param throughput how fast it computes expert rows; null from a worker that does not say (older
 *     versions)
 */
public record WorkerRecord(String id, String address, String backend, long memoryBytes, WorkerState state,
        Map<Integer, Set<Integer>> held, long heldEpoch, long heartbeatMillis, WorkerThroughput throughput) {
    public WorkerRecord {
        requireNonNull(id, "id is null");
        requireNonNull(address, "address is null");
        requireNonNull(state, "state is null");
        Map<Integer, Set<Integer>> copy = new TreeMap<>();
        if (held != null) {
            held.forEach((l, es) -> copy.put(l, new TreeSet<>(es)));
        }
        held = copy;
    }

    /** A worker that does not report its throughput. */
    public WorkerRecord(String id, String address, String backend, long memoryBytes, WorkerState state,
            Map<Integer, Set<Integer>> held, long heldEpoch, long heartbeatMillis) {
        this(id, address, backend, memoryBytes, state, held, heldEpoch, heartbeatMillis, null);
    }

    /** The speed the planner balances time with; 0 when the worker has not said. */
    public double planningRowsPerSecond() {
        return throughput == null ? 0 : throughput.planningRowsPerSecond();
    }

    public int expertCount() {
        return held.values().stream().mapToInt(Set::size).sum();
    }

    public WorkerRecord withState(WorkerState s) {
        return new WorkerRecord(id, address, backend, memoryBytes, s, held, heldEpoch, heartbeatMillis, throughput);
    }

    public WorkerRecord withHeld(Map<Integer, Set<Integer>> h, long epoch) {
        return new WorkerRecord(id, address, backend, memoryBytes, state, h, epoch, heartbeatMillis, throughput);
    }

    public WorkerRecord withHeartbeat(long millis) {
        return new WorkerRecord(id, address, backend, memoryBytes, state, held, heldEpoch, millis, throughput);
    }

    public WorkerRecord withThroughput(WorkerThroughput t) {
        return new WorkerRecord(id, address, backend, memoryBytes, state, held, heldEpoch, heartbeatMillis, t);
    }

    public String toJson() {
        return Json.GSON.toJson(this);
    }

    public static WorkerRecord fromJson(String json) {
        return Json.GSON.fromJson(json, WorkerRecord.class);
    }
}
