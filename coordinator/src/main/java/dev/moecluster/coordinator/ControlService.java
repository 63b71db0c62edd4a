package dev.moecluster.coordinator;

import com.hazelcast.core.EntryEvent;
import com.hazelcast.core.HazelcastInstance;
import com.hazelcast.map.IMap;
import com.hazelcast.map.listener.EntryAddedListener;
import com.hazelcast.map.listener.EntryUpdatedListener;
import com.hazelcast.splitbrainprotection.SplitBrainProtectionException;
import dev.moecluster.control.ControlMaps;
import dev.moecluster.control.ErrorText;
import dev.moecluster.control.HealthReport;
import dev.moecluster.control.LoadReport;
import dev.moecluster.control.PeerIdentity;
import dev.moecluster.control.RouterRecord;
import dev.moecluster.control.WorkerRecord;
import dev.moecluster.control.WorkerState;
import dev.moecluster.core.placement.ExpertPlacement;
import dev.moecluster.proto.ControlGrpc;
import dev.moecluster.proto.PlacementUpdate;
import dev.moecluster.proto.RouterHeartbeatRequest;
import dev.moecluster.proto.SignedRecord;
import dev.moecluster.proto.WatchAssignmentRequest;
import dev.moecluster.proto.WatchPlacementRequest;
import dev.moecluster.proto.WorkerHealth;
import dev.moecluster.proto.WorkerHeartbeatRequest;
import dev.moecluster.proto.WorkerHeartbeatResponse;
import io.grpc.Status;
import io.grpc.stub.ServerCallStreamObserver;
import io.grpc.stub.StreamObserver;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.UUID;
import java.util.concurrent.ConcurrentHashMap;
import java.util.function.BiConsumer;
import java.util.logging.Level;
import java.util.logging.Logger;

/**
 * The gRPC {@code Control} API: the only way workers and routers reach the cluster state. Any
 * coordinator answers, reading and writing the shared maps as a Hazelcast member. Each caller can touch
 * only its own records, checked before anything is written: a worker heartbeat writes the registry
 * record under the address it reports (state and time stay the coordinators'), a router heartbeat its
 * router and load records; both read the placement and assignments exactly as the leader signed them.
 * The streams push every change of the assignment and placement records; components also poll with
 * their heartbeats, so a lost stream only delays a change by one heartbeat. Under mutual TLS a worker
 * speaks only for a host its client certificate names ({@link PeerIdentity#names}): the worker token alone
 * cannot register, or watch the assignment of, an address its holder's certificate does not cover.
 */
final class ControlService extends ControlGrpc.ControlImplBase implements AutoCloseable {
    private static final Logger LOG = Logger.getLogger(ControlService.class.getName());
    /** Characters of an id or address: far above any real one, far below what could hurt. */
    static final int MAX_NAME_LENGTH = 256;
    private static final int CAS_ATTEMPTS = 10;
    /** Workers one router may report on: far above any real cluster. */
    static final int MAX_HEALTH_ENTRIES = 100_000;

    private final HazelcastInstance hz;
    private final ModelShape shape;
    private final boolean bindWorkerIdentity;
    private final Map<String, Set<Watcher<SignedRecord>>> assignmentWatchers = new ConcurrentHashMap<>();
    private final Set<Watcher<PlacementUpdate>> placementWatchers = ConcurrentHashMap.newKeySet();
    private final UUID assignmentListener;
    private final UUID placementListener;

    /**
     * @param bindWorkerIdentity whether worker calls must come with a client certificate naming the worker's
     *     host (in {@link PeerIdentity#CURRENT}); true when the control port requires client certificates
     */
    ControlService(HazelcastInstance hz, ModelShape shape, boolean bindWorkerIdentity) {
        this.hz = hz;
        this.shape = shape;
        this.bindWorkerIdentity = bindWorkerIdentity;
        this.assignmentListener = map(ControlMaps.ASSIGNMENTS).addEntryListener(
                new Changes((address, json) -> push(assignmentWatchers.get(address), record(json))), true);
        this.placementListener = map(ControlMaps.PLACEMENT).addEntryListener(new Changes((key, json) -> {
            if (ControlMaps.CURRENT.equals(key) && !placementWatchers.isEmpty()) {
                push(placementWatchers, placementUpdate(json));
            }
        }), ControlMaps.CURRENT, true);
    }

    private IMap<String, String> map(String name) {
        return hz.getMap(name);
    }

    @Override
    public void workerHeartbeat(WorkerHeartbeatRequest request, StreamObserver<WorkerHeartbeatResponse> responses) {
        WorkerRecord reported;
        try {
            reported = checkedWorker(request.getWorkerJson());
        } catch (IllegalArgumentException e) {
            responses.onError(Status.INVALID_ARGUMENT.withDescription(e.getMessage()).asRuntimeException());
            return;
        }
        Status unbound = unboundIdentity(reported.address());
        if (unbound != null) {
            responses.onError(unbound.asRuntimeException());
            return;
        }
        WorkerRecord written;
        try {
            written = register(reported, request.getFirst(), request.getDrain());
        } catch (SplitBrainProtectionException minority) {
            responses.onError(minoritySide());
            return;
        }
        if (written == null) {
            responses.onError(Status.ABORTED.withDescription("the registry record of " + reported.address()
                    + " changed under every attempt to update it; heartbeat again").asRuntimeException());
            return;
        }
        WorkerHeartbeatResponse.Builder answer = WorkerHeartbeatResponse.newBuilder()
                .setWorkerJson(written.toJson())
                .setAssignmentJson(orEmpty(map(ControlMaps.ASSIGNMENTS).get(reported.address())));
        if (written.state() == WorkerState.DRAINING || written.state() == WorkerState.DRAINED) {
            answer.setPlacedExperts(placedExperts(reported.address()));
        }
        responses.onNext(answer.build());
        responses.onCompleted();
    }

    /**
     * Merges a worker's heartbeat into its registry record without overwriting what the coordinators
     * decide: the state stays theirs (DEAD comes back to ACTIVE, SUSPECT stays until the leader's
     * probation ends, a drain request turns ACTIVE or SUSPECT into DRAINING), the time is this coordinator's clock, and the experts held only move forward in epoch.
     * A process's first registration replaces whatever an earlier process left under the address.
     *
     * @return the record written, or null when the record kept changing under the update
     */
    private WorkerRecord register(WorkerRecord reported, boolean first, boolean drain) {
        IMap<String, String> workers = map(ControlMaps.WORKERS);
        for (int attempt = 0; attempt < CAS_ATTEMPTS; attempt++) {
            long now = System.currentTimeMillis();
            String old = workers.get(reported.address());
            WorkerRecord next;
            if (old == null || first) {
                next = new WorkerRecord(reported.id(), reported.address(), reported.backend(), reported.memoryBytes(),
                        WorkerState.ACTIVE, reported.held(), reported.heldEpoch(), now, reported.throughput());
            } else {
                WorkerRecord base = WorkerRecord.fromJson(old);
                WorkerState state = base.state() == WorkerState.DEAD ? WorkerState.ACTIVE : base.state();
                boolean newer = reported.heldEpoch() >= base.heldEpoch();
                next = new WorkerRecord(reported.id(), reported.address(), reported.backend(), reported.memoryBytes(), state,
                        newer ? reported.held() : base.held(), newer ? reported.heldEpoch() : base.heldEpoch(), now,
                        reported.throughput());
            }
            if (drain && (next.state() == WorkerState.ACTIVE || next.state() == WorkerState.SUSPECT)) {
                next = next.withState(WorkerState.DRAINING);
            }
            String json = next.toJson();
            boolean written = old == null ? workers.putIfAbsent(reported.address(), json) == null
                    : workers.replace(reported.address(), old, json);
            if (written) {
                return next;
            }
        }
        return null;
    }

    /** The heartbeat's record, refused unless it names a worker and its experts fit the model. */
    private WorkerRecord checkedWorker(String json) {
        WorkerRecord w;
        try {
            w = WorkerRecord.fromJson(json);
        } catch (RuntimeException e) {
            throw new IllegalArgumentException("worker_json is not a worker record: " + ErrorText.excerpt(String.valueOf(e.getMessage())));
        }
        if (w == null) {
            throw new IllegalArgumentException("worker_json is empty");
        }
        requireName(w.id(), "worker id");
        requireName(w.address(), "worker address");
        if (w.backend() != null && w.backend().length() > MAX_NAME_LENGTH) {
            throw new IllegalArgumentException("worker backend name is longer than " + MAX_NAME_LENGTH + " characters");
        }
        if (w.memoryBytes() < 0 || w.heldEpoch() < 0) {
            throw new IllegalArgumentException("worker memory and held epoch must not be negative");
        }
        w.held().forEach((layer, experts) -> {
            if (!shape.moeLayers().contains(layer)) {
                throw new IllegalArgumentException("worker holds experts of layer " + layer + ", which is not a MoE layer of the model");
            }
            for (int e : experts) {
                if (e < 0 || e >= shape.numExperts()) {
                    throw new IllegalArgumentException("worker holds expert " + e + " of layer " + layer + "; the model has "
                            + shape.numExperts());
                }
            }
        });
        return w;
    }

    private static void requireName(String name, String what) {
        if (name == null || name.isBlank()) {
            throw new IllegalArgumentException(what + " is missing");
        }
        if (name.length() > MAX_NAME_LENGTH) {
            throw new IllegalArgumentException(what + " is longer than " + MAX_NAME_LENGTH + " characters: " + ErrorText.excerpt(name));
        }
    }

    /**
     * Null when the caller may speak for the worker at {@code address}: always without identity binding, else
     * when its client certificate names the address's host, the name routers check when they dial it.
     */
    private Status unboundIdentity(String address) {
        if (!bindWorkerIdentity) {
            return null;
        }
        PeerIdentity peer = PeerIdentity.CURRENT.get();
        if (peer == null) {
            return Status.UNAUTHENTICATED.withDescription("a worker must present its client certificate to the Control API");
        }
        String host = hostOf(address);
        if (peer.names(host)) {
            return null;
        }
        return Status.PERMISSION_DENIED.withDescription("worker address " + ErrorText.excerpt(address) + ": host "
                + ErrorText.excerpt(host) + " is not named by the caller's client certificate " + ErrorText.excerpt(peer.subject())
                + " (" + peer.describeNames() + "); a worker registers only under a host its certificate names");
    }

    /** The host of {@code host:port} or {@code [v6]:port} (brackets kept); an address without a port is all host. */
    static String hostOf(String address) {
        if (address.startsWith("[")) {
            int end = address.indexOf(']');
            return end < 0 ? address : address.substring(0, end + 1);
        }
        int colon = address.lastIndexOf(':');
        return colon > 0 && address.indexOf(':') == colon ? address.substring(0, colon) : address;
    }

    private int placedExperts(String address) {
        String json = map(ControlMaps.PLACEMENT).get(ControlMaps.CURRENT);
        if (json == null) {
            return 0;
        }
        try {
            ExpertPlacement p = ExpertPlacement.fromJson(json);
            int index = p.indexOf(address);
            return index < 0 ? 0 : p.heldBy(index).values().stream().mapToInt(Set::size).sum();
        } catch (RuntimeException unreadable) {
            return 0; // the leader repairs a record it cannot read; the count says nothing meanwhile
        }
    }

    @Override
    public void watchAssignment(WatchAssignmentRequest request, StreamObserver<SignedRecord> responses) {
        String address = request.getAddress();
        try {
            requireName(address, "worker address");
        } catch (IllegalArgumentException e) {
            responses.onError(Status.INVALID_ARGUMENT.withDescription(e.getMessage()).asRuntimeException());
            return;
        }
        Status unbound = unboundIdentity(address);
        if (unbound != null) {
            responses.onError(unbound.asRuntimeException());
            return;
        }
        Watcher<SignedRecord> watcher = new Watcher<>((ServerCallStreamObserver<SignedRecord>) responses);
        Set<Watcher<SignedRecord>> watchers = assignmentWatchers.computeIfAbsent(address, k -> ConcurrentHashMap.newKeySet());
        watchers.add(watcher);
        watcher.call.setOnCancelHandler(() -> assignmentWatchers.computeIfPresent(address, (k, set) -> {
            set.remove(watcher);
            return set.isEmpty() ? null : set;
        }));
        String current = map(ControlMaps.ASSIGNMENTS).get(address);
        if (current != null) {
            watcher.send(record(current));
        }
    }

    @Override
    public void routerHeartbeat(RouterHeartbeatRequest request, StreamObserver<PlacementUpdate> responses) {
        RouterRecord router;
        LoadReport load;
        try {
            router = RouterRecord.fromJson(request.getRouterJson());
            load = LoadReport.fromJson(request.getLoadJson());
            if (router == null || load == null) {
                throw new IllegalArgumentException("router_json and load_json are both required");
            }
            requireName(router.id(), "router id");
            requireName(router.address(), "router address");
            if (!router.id().equals(load.router())) {
                throw new IllegalArgumentException("the load report is router " + ErrorText.excerpt(String.valueOf(load.router()))
                        + "'s, the heartbeat router " + ErrorText.excerpt(router.id()) + "'s");
            }
            if (request.getWorkerHealthCount() > MAX_HEALTH_ENTRIES) {
                throw new IllegalArgumentException("the heartbeat reports " + request.getWorkerHealthCount()
                        + " workers' health; at most " + MAX_HEALTH_ENTRIES);
            }
            for (WorkerHealth h : request.getWorkerHealthList()) {
                requireName(h.getAddress(), "worker address in the health report");
                if (h.getFailures() < 0 || h.getAnswers() < 0 || h.getFailingStreak() < 0) {
                    throw new IllegalArgumentException("negative batch counts for worker " + ErrorText.excerpt(h.getAddress()));
                }
            }
            load.tokensByLayer().forEach((layer, tokens) -> {
                if (!shape.moeLayers().contains(layer) || tokens == null || tokens.length > shape.numExperts()) {
                    throw new IllegalArgumentException("the load report's layer " + layer + " does not fit the model ("
                            + shape.moeLayers().size() + " MoE layers of " + shape.numExperts() + " experts)");
                }
            });
        } catch (RuntimeException e) {
            responses.onError(Status.INVALID_ARGUMENT.withDescription("malformed router heartbeat: "
                    + ErrorText.excerpt(String.valueOf(e.getMessage()))).asRuntimeException());
            return;
        }
        long now = System.currentTimeMillis();
        Map<String, HealthReport.Counts> health = new TreeMap<>();
        request.getWorkerHealthList().forEach(h -> health.merge(h.getAddress(),
                new HealthReport.Counts(h.getFailures(), h.getAnswers(), h.getFailingStreak()), HealthReport.Counts::plus));
        try {
            // times are this coordinator's clock: the leader compares them with its own
            map(ControlMaps.ROUTERS).set(router.id(), new RouterRecord(router.id(), router.address(), router.epoch(), now).toJson());
            map(ControlMaps.LOAD).set(router.id(), new LoadReport(router.id(), now, load.tokensByLayer()).toJson());
            map(ControlMaps.HEALTH).set(router.id(), new HealthReport(router.id(), now, health).toJson());
        } catch (SplitBrainProtectionException minority) {
            responses.onError(minoritySide());
            return;
        }
        responses.onNext(placementUpdate(map(ControlMaps.PLACEMENT).get(ControlMaps.CURRENT)));
        responses.onCompleted();
    }

    @Override
    public void watchPlacement(WatchPlacementRequest request, StreamObserver<PlacementUpdate> responses) {
        Watcher<PlacementUpdate> watcher = new Watcher<>((ServerCallStreamObserver<PlacementUpdate>) responses);
        placementWatchers.add(watcher);
        watcher.call.setOnCancelHandler(() -> placementWatchers.remove(watcher));
        String current = map(ControlMaps.PLACEMENT).get(ControlMaps.CURRENT);
        if (current != null) {
            watcher.send(placementUpdate(current));
        }
    }

    /** The placement record as the leader wrote it, with the registry records of the workers it names. */
    private PlacementUpdate placementUpdate(String json) {
        PlacementUpdate.Builder update = PlacementUpdate.newBuilder();
        if (json == null) {
            return update.build();
        }
        update.setPlacementJson(json);
        try {
            IMap<String, String> workers = map(ControlMaps.WORKERS);
            for (String address : ExpertPlacement.fromJson(json).workers()) {
                String record = workers.get(address);
                if (record != null) {
                    update.addWorkerJson(record);
                }
            }
        } catch (RuntimeException unreadable) {
            // the router's gate refuses a record it cannot read and says why; no workers needed for that
        }
        return update.build();
    }

    /** UNAVAILABLE, so the component moves on to a coordinator on the majority's side. */
    private static RuntimeException minoritySide() {
        return Status.UNAVAILABLE.withDescription("this coordinator is on a minority side of a network split and writes nothing;"
                + " ask another coordinator").asRuntimeException();
    }

    private static SignedRecord record(String json) {
        return SignedRecord.newBuilder().setJson(json).build();
    }

    private static String orEmpty(String s) {
        return s == null ? "" : s;
    }

    private static <T> void push(Set<Watcher<T>> watchers, T value) {
        if (watchers != null) {
            watchers.forEach(w -> w.send(value));
        }
    }

    /** One open stream; sends are serialized since Hazelcast's event threads and the opening call both send. */
    private static final class Watcher<T> {
        final ServerCallStreamObserver<T> call;

        Watcher(ServerCallStreamObserver<T> call) {
            this.call = call;
        }

        synchronized void send(T value) {
            if (call.isCancelled()) {
                return;
            }
            try {
                call.onNext(value);
            } catch (RuntimeException e) {
                LOG.log(Level.FINE, "control stream closed while sending", e);
            }
        }

        /** Ends the stream; the component reopens it on another coordinator. */
        synchronized void finish() {
            try {
                call.onCompleted();
            } catch (RuntimeException e) {
                LOG.log(Level.FINE, "control stream already closed", e);
            }
        }
    }

    /** Hands each added or updated entry (key, value) to {@code action}. */
    private record Changes(BiConsumer<String, String> action)
            implements EntryAddedListener<String, String>, EntryUpdatedListener<String, String> {
        @Override
        public void entryAdded(EntryEvent<String, String> event) {
            action.accept(event.getKey(), event.getValue());
        }

        @Override
        public void entryUpdated(EntryEvent<String, String> event) {
            action.accept(event.getKey(), event.getValue());
        }
    }

    @Override
    public void close() {
        try {
            map(ControlMaps.ASSIGNMENTS).removeEntryListener(assignmentListener);
            map(ControlMaps.PLACEMENT).removeEntryListener(placementListener);
        } catch (RuntimeException e) {
            LOG.log(Level.FINE, "control listeners already gone with the member", e);
        }
        placementWatchers.forEach(Watcher::finish);
        assignmentWatchers.values().forEach(set -> set.forEach(Watcher::finish));
    }
}
