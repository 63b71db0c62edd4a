package dev.moecluster.worker;

import com.hazelcast.map.IMap;
import dev.moecluster.control.Assignment;
import dev.moecluster.control.ControlClient;
import dev.moecluster.control.ControlMaps;
import dev.moecluster.control.PlacementGate;
import dev.moecluster.control.RecordSigning;
import dev.moecluster.control.WorkerRecord;
import dev.moecluster.control.WorkerState;
import dev.moecluster.control.WorkerThroughput;
import java.time.Duration;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import java.util.function.Consumer;
import java.util.function.Supplier;
import java.util.function.UnaryOperator;
import java.util.logging.Level;
import java.util.logging.Logger;

/**
 * A worker's part in the control plane: registers in the worker registry (keyed by its address),
 * heartbeats, and follows its assignment: loads the experts it is given, unloads the ones taken
 * away, then acknowledges by recording what it holds and the assignment epoch. Keeps serving on what
 * it holds while no coordinator answers. Reports readiness: ready once it is registered and holds
 * its current assignment (none yet counts as empty: a new worker is ready to be given experts, so a
 * rolling restart can go on), not ready while it is draining. {@link #drain} asks the coordinators to
 * move its experts away before it stops. A process registering under an address a previous process
 * left DRAINED or DEAD starts over as ACTIVE: that state belonged to the process before it.
 */
final class WorkerAgent implements AutoCloseable {
    private static final Logger LOG = Logger.getLogger(WorkerAgent.class.getName());
    private static final long DRAIN_POLL_MILLIS = 250;
    private static final long DRAIN_PROGRESS_MILLIS = 5000;

    private final ControlClient client;
    private final ExpertStore store;
    private final String id;
    private final String address;
    private final String backend;
    private final long memoryBytes;
    private final Supplier<WorkerThroughput> throughput;
    private final Consumer<Boolean> readiness;
    private volatile long appliedEpoch;
    /** This process has written its record in the registry. */
    private volatile boolean registered;
    /** Registered, and read (and applied) its assignment from the registry at least once. */
    private volatile boolean synced;
    /** The registry says DRAINING or DRAINED, or {@link #drain} was called. */
    private volatile boolean draining;
    /** {@link #drain} was called: this process is stopping, whatever an operator does next. */
    private volatile boolean stopping;
    private long rejectedAssignments;
    private String lastRefused;

    /** @param readiness told whether the worker may take traffic, whenever that may have changed */
    /** @param throughput what the worker reports about its speed, read at every heartbeat */
    WorkerAgent(ControlClient client, ExpertStore store, String id, String address, String backend, long memoryBytes,
            Supplier<WorkerThroughput> throughput, Consumer<Boolean> readiness) {
        this.throughput = throughput;
        this.client = client;
        this.readiness = readiness;
        this.store = store;
        this.id = id;
        this.address = address;
        this.backend = backend;
        this.memoryBytes = memoryBytes;
        client.watch(ControlMaps.ASSIGNMENTS, address, this::consider);
        client.onConnected(this::sync);
        client.every(client.config().heartbeatInterval().toMillis(), this::sync);
    }

    /** Heartbeat, then read this worker's assignment and apply it if it is newer; then readiness. */
    private void sync() {
        heartbeat();
        if (registered) {
            try {
                String json = client.map(ControlMaps.ASSIGNMENTS).get(address);
                if (json != null) {
                    consider(json); // an epoch already applied changes nothing
                }
                synced = true;
            } catch (RuntimeException e) {
                LOG.log(Level.FINE, "registry unreachable; worker keeps serving", e);
            }
        }
        followState(null);
    }

    /**
     * Applies an assignment record unless it is malformed, its epoch is absurd (a forged huge one would
     * make every real assignment look old) or, with the leader's public key configured, it lacks the
     * leader's signature for this worker's address.
     */
    private void consider(String json) {
        Assignment a;
        try {
            a = Assignment.fromJson(json);
        } catch (RuntimeException e) {
            refuse(json, "it does not parse");
            return;
        }
        if (a.epoch() < 0 || a.epoch() > 2 * PlacementGate.MAX_EPOCH) {
            refuse(json, "epoch " + a.epoch() + " is outside 0.." + 2 * PlacementGate.MAX_EPOCH);
            return;
        }
        RecordSigning key = client.config().placementKey();
        if (key != null && !key.verifies(RecordSigning.ASSIGNMENT, address, a.toJson(), RecordSigning.signatureIn(json))) {
            refuse(json, "it does not carry the leader's signature");
            return;
        }
        apply(a);
    }

    private synchronized void refuse(String json, String why) {
        rejectedAssignments++;
        if (!json.equals(lastRefused)) { // the heartbeat reads it again: warn once per record
            lastRefused = json;
            LOG.warning("worker " + id + " ignored an assignment record: " + why);
        }
    }

    /** Assignment records ignored as forged, malformed or unsigned. */
    synchronized long rejectedAssignments() {
        return rejectedAssignments;
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
            WorkerRecord acknowledged = update(r -> r.withHeld(store.assignment().byLayer(), a.epoch()));
            followState(acknowledged);
        } catch (RuntimeException e) {
            LOG.log(Level.WARNING, "worker " + id + " could not apply assignment " + a.epoch(), e);
        }
    }

    private void heartbeat() {
        boolean first = !registered && !draining;
        WorkerRecord written = update(r -> {
            if (first) {
                // this process's first registration: a record a previous process under this address
                // left (DRAINED after a drain, DEAD after a crash, its experts) no longer applies
                return new WorkerRecord(id, address, backend, memoryBytes, WorkerState.ACTIVE, store.assignment().byLayer(),
                        appliedEpoch, System.currentTimeMillis(), throughput.get());
            }
            WorkerRecord next = r.withHeartbeat(System.currentTimeMillis()).withThroughput(throughput.get());
            // a worker declared dead that is heard from again rejoins
            return next.state() == WorkerState.DEAD ? next.withState(WorkerState.ACTIVE) : next;
        });
        if (written != null) {
            registered = true;
        }
        followState(written);
    }

    /**
     * Draining as the registry says (an operator's {@code moe admin drain} counts too, and {@code moe admin
     * undrain} ends it unless this process is stopping), then readiness.
     */
    private synchronized void followState(WorkerRecord written) {
        if (written != null) {
            draining = stopping || written.state() == WorkerState.DRAINING || written.state() == WorkerState.DRAINED;
        }
        readiness.accept(synced && !draining);
    }

    /**
     * Asks the coordinators to drain this worker (as {@code moe admin drain} does: state DRAINING in the
     * registry, which the leader answers by moving its experts to other workers, switching routers to
     * the new epoch and then unassigning them here), reports not ready, and waits until the registry
     * says DRAINED or {@code timeout} passes. Keeps serving meanwhile.
     *
     * @return true when the coordinators reported DRAINED in time
     */
    boolean drain(Duration timeout) {
        synchronized (this) {
            stopping = true;
            draining = true;
            readiness.accept(false);
        }
        long start = System.nanoTime();
        long deadline = start + timeout.toNanos();
        long nextProgress = 0;
        boolean asked = false;
        while (true) {
            WorkerRecord record = client.get(ControlMaps.WORKERS, address).map(WorkerRecord::fromJson).orElse(null);
            if (record != null && record.state() == WorkerState.DRAINED) {
                LOG.info("worker " + id + " is drained: its experts are placed elsewhere and routers switched epochs");
                return true;
            }
            if (record != null && (record.state() == WorkerState.ACTIVE || record.state() == WorkerState.DEAD)) {
                WorkerRecord written = update(r -> r.state() == WorkerState.ACTIVE || r.state() == WorkerState.DEAD
                        ? r.withState(WorkerState.DRAINING) : r);
                if (written != null) {
                    record = written;
                    if (!asked) {
                        asked = true;
                        LOG.info("worker " + id + " asked the coordinators to drain it (" + address + ")");
                    }
                }
            }
            long now = System.nanoTime();
            if (now - deadline >= 0) {
                LOG.warning("worker " + id + " not drained after " + timeout.toSeconds() + " s (" + progress(record)
                        + "); stopping anyway");
                return false;
            }
            if (now - start >= TimeUnit.MILLISECONDS.toNanos(nextProgress)) {
                nextProgress += DRAIN_PROGRESS_MILLIS;
                LOG.info("worker " + id + " draining: " + progress(record) + "; waiting up to "
                        + TimeUnit.NANOSECONDS.toSeconds(deadline - now) + " s more for DRAINED");
            }
            try {
                Thread.sleep(DRAIN_POLL_MILLIS);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                LOG.warning("worker " + id + " drain interrupted; stopping");
                return false;
            }
        }
    }

    /** "12 experts still placed here, 12 held, state DRAINING", from the published placement and the store. */
    private String progress(WorkerRecord record) {
        String placed = client.currentPlacement()
                .filter(p -> p.workers().contains(address))
                .map(p -> count(p.heldBy(p.indexOf(address))) + " experts still placed here")
                .orElse("no experts placed here");
        return placed + ", " + store.assignment().expertCount() + " held, state "
                + (record == null ? "unknown (no coordinator answers)" : record.state().name());
    }

    private static int count(Map<Integer, Set<Integer>> byLayer) {
        return byLayer.values().stream().mapToInt(Set::size).sum();
    }

    /**
     * Read-modify-write of this worker's record that never overwrites the coordinator's state changes.
     *
     * @return the record written, or null when the registry did not answer
     */
    private WorkerRecord update(UnaryOperator<WorkerRecord> change) {
        try {
            IMap<String, String> map = client.map(ControlMaps.WORKERS);
            for (int attempt = 0; attempt < 10; attempt++) {
                String old = map.get(address);
                WorkerRecord base = old == null
                        ? new WorkerRecord(id, address, backend, memoryBytes, WorkerState.ACTIVE, store.assignment().byLayer(),
                                appliedEpoch, System.currentTimeMillis())
                        : WorkerRecord.fromJson(old);
                WorkerRecord changed = change.apply(base);
                String next = changed.toJson();
                if (old == null ? map.putIfAbsent(address, next) == null : map.replace(address, old, next)) {
                    return changed;
                }
            }
        } catch (RuntimeException e) {
            LOG.log(Level.FINE, "registry unreachable; worker keeps serving", e);
        }
        return null;
    }

    Map<Integer, Set<Integer>> held() {
        return store.assignment().byLayer();
    }

    @Override
    public void close() {
        client.close();
    }
}
