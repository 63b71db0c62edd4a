package dev.moecluster.worker;

import com.hazelcast.map.IMap;
import dev.moecluster.control.Assignment;
import dev.moecluster.control.ControlClient;
import dev.moecluster.control.ControlMaps;
import dev.moecluster.control.WorkerRecord;
import dev.moecluster.control.WorkerState;
import java.util.Map;
import java.util.Set;
import java.util.function.UnaryOperator;
import java.util.logging.Level;
import java.util.logging.Logger;

/**
 * A worker's part in the control plane: registers in the worker registry (keyed by its address),
 * heartbeats, and follows its assignment: loads the experts it is given, unloads the ones taken
 * away, then acknowledges by recording what it holds and the assignment epoch. Keeps serving on what
 * it holds while no coordinator answers.
 */
final class WorkerAgent implements AutoCloseable {
    private static final Logger LOG = Logger.getLogger(WorkerAgent.class.getName());

    private final ControlClient client;
    private final ExpertStore store;
    private final String id;
    private final String address;
    private final String backend;
    private final long memoryBytes;
    private volatile long appliedEpoch;

    WorkerAgent(ControlClient client, ExpertStore store, String id, String address, String backend, long memoryBytes) {
        this.client = client;
        this.store = store;
        this.id = id;
        this.address = address;
        this.backend = backend;
        this.memoryBytes = memoryBytes;
        client.watch(ControlMaps.ASSIGNMENTS, address, json -> apply(Assignment.fromJson(json)));
        client.onConnected(() -> {
            heartbeat();
            client.get(ControlMaps.ASSIGNMENTS, address).map(Assignment::fromJson).ifPresent(this::apply);
        });
        client.every(client.config().heartbeatInterval().toMillis(), () -> {
            heartbeat();
            client.get(ControlMaps.ASSIGNMENTS, address).map(Assignment::fromJson)
                    .filter(a -> a.epoch() > appliedEpoch).ifPresent(this::apply);
        });
    }

    private synchronized void apply(Assignment a) {
        if (a.epoch() < appliedEpoch) {
            return;
        }
        try {
            int changes = store.reconcile(a.experts());
            appliedEpoch = a.epoch();
            if (changes > 0) {
                LOG.info("worker " + id + " now holds " + store.assignment().expertCount() + " experts (assignment "
                        + a.epoch() + ", " + changes + " loaded or unloaded)");
            }
            update(r -> r.withHeld(store.assignment().byLayer(), a.epoch()));
        } catch (RuntimeException e) {
            LOG.log(Level.WARNING, "worker " + id + " could not apply assignment " + a.epoch(), e);
        }
    }

    private void heartbeat() {
        update(r -> {
            WorkerRecord next = r.withHeartbeat(System.currentTimeMillis());
            // a worker declared dead that is heard from again rejoins
            return next.state() == WorkerState.DEAD ? next.withState(WorkerState.ACTIVE) : next;
        });
    }

    /** Read-modify-write of this worker's record that never overwrites the coordinator's state changes. */
    private void update(UnaryOperator<WorkerRecord> change) {
        try {
            IMap<String, String> map = client.map(ControlMaps.WORKERS);
            for (int attempt = 0; attempt < 10; attempt++) {
                String old = map.get(address);
                WorkerRecord base = old == null
                        ? new WorkerRecord(id, address, backend, memoryBytes, WorkerState.ACTIVE, store.assignment().byLayer(),
                                appliedEpoch, System.currentTimeMillis())
                        : WorkerRecord.fromJson(old);
                String next = change.apply(base).toJson();
                if (old == null ? map.putIfAbsent(address, next) == null : map.replace(address, old, next)) {
                    return;
                }
            }
        } catch (RuntimeException e) {
            LOG.log(Level.FINE, "registry unreachable; worker keeps serving", e);
        }
    }

    Map<Integer, Set<Integer>> held() {
        return store.assignment().byLayer();
    }

    @Override
    public void close() {
        client.close();
    }
}
