package dev.moecluster.worker;

import dev.moecluster.control.Assignment;
import dev.moecluster.control.ControlClient;
import dev.moecluster.control.PlacementGate;
import dev.moecluster.control.RecordSigning;
import dev.moecluster.control.WorkerRecord;
import dev.moecluster.control.WorkerState;
import dev.moecluster.control.WorkerThroughput;
import dev.moecluster.proto.WorkerHeartbeatRequest;
import dev.moecluster.proto.WorkerHeartbeatResponse;
import java.time.Duration;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import java.util.function.Consumer;
import java.util.function.Supplier;
import java.util.logging.Level;
import java.util.logging.Logger;

/**
 * A worker's part in the control plane, through the coordinators' Control API: registers in the
 * worker registry (keyed by its address), heartbeats, and follows its assignment (streamed, and
 * answered to every heartbeat): loads the experts it is given, unloads the ones taken away, then
 * acknowledges with a heartbeat that says what it holds and the assignment epoch. Keeps serving on what
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

    /**
     * @param readiness told whether the worker may take traffic, whenever that may have changed
     * @param throughput what the worker reports about its speed, read at every heartbeat
     */
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
        client.watchAssignment(address, this::consider);
        client.every(client.config().heartbeatInterval().toMillis(), this::sync);
    }

    /** Heartbeat, then apply the assignment the coordinators answered with if it is newer; then readiness. */
    private void sync() {
        heartbeat(false).ifPresent(answer -> {
            if (!answer.getAssignmentJson().isEmpty()) {
                consider(answer.getAssignmentJson()); // an epoch already applied changes nothing
            }
            synced = true;
        });
        followState(null);
    }

    /**
     * One heartbeat: what this worker holds and at which assignment epoch, its throughput, and whether
     * this is the process's first registration or a request to drain. The coordinators keep the state.
     *
     * @return their answer, empty while none answers
     */
    private Optional<WorkerHeartbeatResponse> heartbeat(boolean drain) {
        WorkerHeartbeatRequest request;
        synchronized (this) { // what is held and its epoch, taken together
            WorkerRecord self = new WorkerRecord(id, address, backend, memoryBytes, WorkerState.ACTIVE, store.assignment().byLayer(),
                    appliedEpoch, 0, throughput.get());
            request = WorkerHeartbeatRequest.newBuilder().setWorkerJson(self.toJson()).setFirst(!registered && !draining)
                    .setDrain(drain).build();
        }
        Optional<WorkerHeartbeatResponse> answer = client.workerHeartbeat(request);
        answer.ifPresent(a -> {
            registered = true;
            followState(WorkerRecord.fromJson(a.getWorkerJson()));
        });
        return answer;
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

    private void apply(Assignment a) {
        boolean applied;
        synchronized (this) {
            if (a.epoch() < appliedEpoch) {
                return;
            }
            try {
                int changes = store.reconcile(a.experts());
                applied = a.epoch() > appliedEpoch || changes > 0;
                appliedEpoch = a.epoch();
                if (changes > 0) {
                    LOG.info("worker " + id + " now holds " + store.assignment().expertCount() + " experts (assignment "
                            + a.epoch() + ", " + changes + " loaded or unloaded)");
                }
            } catch (RuntimeException e) {
                LOG.log(Level.WARNING, "worker " + id + " could not apply assignment " + a.epoch(), e);
                return;
            }
        }
        if (applied) {
            heartbeat(false); // acknowledges at once: the leader's rollout waits for it
        }
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
            WorkerHeartbeatResponse answer = heartbeat(true).orElse(null);
            WorkerRecord record = answer == null ? null : WorkerRecord.fromJson(answer.getWorkerJson());
            if (record != null && record.state() == WorkerState.DRAINED) {
                LOG.info("worker " + id + " is drained: its experts are placed elsewhere and routers switched epochs");
                return true;
            }
            if (record != null && !asked) {
                asked = true;
                LOG.info("worker " + id + " asked the coordinators to drain it (" + address + ")");
            }
            long now = System.nanoTime();
            if (now - deadline >= 0) {
                LOG.warning("worker " + id + " not drained after " + timeout.toSeconds() + " s (" + progress(answer)
                        + "); stopping anyway");
                return false;
            }
            if (now - start >= TimeUnit.MILLISECONDS.toNanos(nextProgress)) {
                nextProgress += DRAIN_PROGRESS_MILLIS;
                LOG.info("worker " + id + " draining: " + progress(answer) + "; waiting up to "
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

    /** "12 experts still placed here, 12 held, state DRAINING", from the coordinators' answer and the store. */
    private String progress(WorkerHeartbeatResponse answer) {
        if (answer == null) {
            return store.assignment().expertCount() + " held, state unknown (no coordinator answers)";
        }
        return answer.getPlacedExperts() + " experts still placed here, " + store.assignment().expertCount() + " held, state "
                + WorkerRecord.fromJson(answer.getWorkerJson()).state().name();
    }

    Map<Integer, Set<Integer>> held() {
        return store.assignment().byLayer();
    }

    @Override
    public void close() {
        client.close();
    }
}
