package dev.moecluster.coordinator;

import com.hazelcast.cluster.Member;
import com.hazelcast.core.HazelcastInstance;
import dev.moecluster.control.ControlMaps;
import dev.moecluster.control.WorkerRecord;
import dev.moecluster.control.WorkerState;
import dev.moecluster.control.WorkerThroughput;
import dev.moecluster.core.placement.ExpertPlacement;
import dev.moecluster.proto.AdminGrpc;
import dev.moecluster.proto.AdminResponse;
import dev.moecluster.proto.AdminStatusRequest;
import dev.moecluster.proto.ClusterStatus;
import dev.moecluster.proto.DrainRequest;
import dev.moecluster.proto.GetLoadRequest;
import dev.moecluster.proto.GetPlacementRequest;
import dev.moecluster.proto.LayerLoad;
import dev.moecluster.proto.ListWorkersRequest;
import dev.moecluster.proto.LoadInfo;
import dev.moecluster.proto.PlacementInfo;
import dev.moecluster.proto.RebalanceRequest;
import dev.moecluster.proto.UndrainRequest;
import dev.moecluster.proto.WorkerInfo;
import dev.moecluster.proto.WorkerList;
import dev.moecluster.proto.WorkerTime;
import io.grpc.Status;
import io.grpc.stub.StreamObserver;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;

/** The gRPC {@code Admin} API; any coordinator answers, reading and writing the shared maps. */
final class AdminService extends AdminGrpc.AdminImplBase {
    /** The methods a read-only admin token may call: views that change nothing. */
    static final Set<String> READ_ONLY_METHODS = Set.of(AdminGrpc.getStatusMethod().getFullMethodName(),
            AdminGrpc.getListWorkersMethod().getFullMethodName(), AdminGrpc.getGetPlacementMethod().getFullMethodName(),
            AdminGrpc.getGetLoadMethod().getFullMethodName());

    private final HazelcastInstance hz;
    private final Reconciler reconciler;
    private final CoordinatorConfig config;

    AdminService(HazelcastInstance hz, Reconciler reconciler, CoordinatorConfig config) {
        this.hz = hz;
        this.reconciler = reconciler;
        this.config = config;
    }

    private ExpertPlacement current() {
        return reconciler.currentPlacement();
    }

    @Override
    public void status(AdminStatusRequest request, StreamObserver<ClusterStatus> responses) {
        ClusterStatus.Builder b = ClusterStatus.newBuilder();
        Set<Member> members = hz.getCluster().getMembers();
        boolean majority = members.size() >= config.majority();
        for (Member m : members) {
            String address = m.getAddress().getHost() + ":" + m.getAddress().getPort();
            if (majority && b.getMembersCount() == 0) {
                b.setLeader(address);
            }
            b.addMembers(address);
        }
        b.setLeading(reconciler.isLeader());
        Map.Entry<Long, String> term = LeaderTerm.current(hz);
        b.setLeaderTerm(term == null ? 0 : term.getKey());
        ExpertPlacement p = current();
        b.setPlacementEpoch(p == null ? 0 : p.epoch());
        String rollout = hz.<String, String>getMap(ControlMaps.PLACEMENT).get(ControlMaps.PENDING);
        b.setRollout(rollout == null ? "idle" : describe(rollout));
        b.setBalancedness(p == null ? 0 : reconciler.balancedness()); // the figure moe_coordinator_balancedness exports
        b.setMinReplicas(p == null ? 0 : minReplicas(p));
        Map<String, Integer> byState = new TreeMap<>();
        reconciler.workers().values().forEach(w -> byState.merge(w.state().name(), 1, Integer::sum));
        b.putAllWorkersByState(byState);
        b.setModel(config.modelDir().getFileName() == null ? "" : config.modelDir().getFileName().toString());
        responses.onNext(b.build());
        responses.onCompleted();
    }

    /** "loading epoch 4"; a record that does not parse (a rogue client's) is reported, not thrown. */
    private static String describe(String rolloutJson) {
        try {
            Rollout r = Rollout.fromJson(rolloutJson);
            return r.phase() + " epoch " + ExpertPlacement.fromJson(r.placementJson()).epoch();
        } catch (RuntimeException e) {
            return "unreadable rollout record (the leader drops it)";
        }
    }

    private static int minReplicas(ExpertPlacement p) {
        int min = Integer.MAX_VALUE;
        for (int[][] experts : p.layers().values()) {
            for (int[] replicas : experts) {
                min = Math.min(min, replicas.length);
            }
        }
        return min == Integer.MAX_VALUE ? 0 : min;
    }

    @Override
    public void listWorkers(ListWorkersRequest request, StreamObserver<WorkerList> responses) {
        long now = System.currentTimeMillis();
        ExpertPlacement p = current();
        ExpertLoad load = reconciler.load();
        WorkerList.Builder b = WorkerList.newBuilder();
        reconciler.workers().forEach((address, w) -> {
            long tokens = 0;
            if (p != null && p.workers().contains(address)) {
                int index = p.indexOf(address);
                for (var e : p.heldBy(index).entrySet()) {
                    for (int expert : e.getValue()) {
                        tokens += load.tokens(e.getKey(), expert) / Math.max(1, p.replicas(e.getKey(), expert).length);
                    }
                }
            }
            WorkerInfo.Builder info = WorkerInfo.newBuilder().setId(w.id()).setAddress(address)
                    .setBackend(w.backend() == null ? "" : w.backend())
                    .setState(w.state().name()).setExperts(w.expertCount()).setMemoryBytes(w.memoryBytes())
                    .setMemoryUsedBytes(w.expertCount() * reconciler.shape().bytesPerExpert())
                    .setHeartbeatAgeMs(now - w.heartbeatMillis()).setLoadTokens(tokens);
            WorkerThroughput t = w.throughput();
            if (t != null) {
                info.setSmallBatchRows(t.smallBatchRows()).setSmallBatchRowsPerS(t.smallBatchRowsPerSecond())
                        .setLargeBatchRows(t.largeBatchRows()).setLargeBatchRowsPerS(t.largeBatchRowsPerSecond())
                        .setLiveRowsPerS(t.liveRowsPerSecond()).setPlanningRowsPerS(t.planningRowsPerSecond())
                        .setThroughputFixed(t.fixed());
            }
            b.addWorkers(info);
        });
        responses.onNext(b.build());
        responses.onCompleted();
    }

    @Override
    public void getPlacement(GetPlacementRequest request, StreamObserver<PlacementInfo> responses) {
        ExpertPlacement p = current();
        if (p == null) {
            responses.onError(Status.NOT_FOUND.withDescription("no placement yet: waiting for workers to register").asRuntimeException());
            return;
        }
        responses.onNext(PlacementInfo.newBuilder().setEpoch(p.epoch()).setJson(p.toJson()).build());
        responses.onCompleted();
    }

    @Override
    public void getLoad(GetLoadRequest request, StreamObserver<LoadInfo> responses) {
        LoadInfo.Builder b = LoadInfo.newBuilder().setWindowSeconds(60);
        ExpertLoad load = reconciler.load();
        ExpertPlacement p = current();
        if (p != null) {
            Map<String, WorkerRecord> workers = reconciler.workers();
            double[] speeds = p.workers().stream()
                    .mapToDouble(a -> workers.containsKey(a) ? workers.get(a).planningRowsPerSecond() : 0)
                    .toArray();
            double[] seconds = PlacementPlanner.workerSeconds(p, load, speeds);
            double total = 0;
            boolean allKnown = true;
            for (double t : seconds) {
                allKnown &= !Double.isNaN(t);
                total += Double.isNaN(t) ? 0 : t;
            }
            for (int w = 0; w < seconds.length; w++) {
                double t = Double.isNaN(seconds[w]) ? 0 : seconds[w];
                double rows = Double.isNaN(seconds[w]) ? rowsOf(p, load, w) : seconds[w] * speeds[w];
                b.addWorkers(WorkerTime.newBuilder().setAddress(p.workers().get(w)).setRows(rows).setRowsPerS(speeds[w])
                        .setSeconds(t).setTimeShare(total > 0 ? t / total : 0));
            }
            b.setIdealSeconds(allKnown ? PlacementPlanner.idealSeconds(load, speeds) : 0);
        }
        load.tokensByLayer().forEach((layer, tokens) -> {
            LayerLoad.Builder l = LayerLoad.newBuilder().setLayer(layer);
            for (long t : tokens) {
                l.addTokens(t);
            }
            b.addLayers(l);
        });
        responses.onNext(b.build());
        responses.onCompleted();
    }

    /** Rows routed to worker {@code w}'s copies, each expert's load split evenly over its copies. */
    private static double rowsOf(ExpertPlacement p, ExpertLoad load, int w) {
        double[] one = new double[p.workers().size()];
        one[w] = 1;
        return PlacementPlanner.workerSeconds(p, load, one)[w];
    }

    /** The registry key (address) of the worker named by id or address, or null. */
    private String workerKey(String name) {
        String key = null;
        for (var e : reconciler.workers().entrySet()) {
            if (e.getKey().equals(name) || e.getValue().id().equals(name)) {
                key = e.getKey();
            }
        }
        return key;
    }

    private static Status noSuchWorker(String name) {
        return Status.NOT_FOUND.withDescription("no worker named " + name + " (see moe admin workers)");
    }

    @Override
    public void drain(DrainRequest request, StreamObserver<AdminResponse> responses) {
        var workers = hz.<String, String>getMap(ControlMaps.WORKERS);
        String key = workerKey(request.getWorker());
        if (key == null) {
            responses.onError(noSuchWorker(request.getWorker()).asRuntimeException());
            return;
        }
        WorkerRecord w = WorkerRecord.fromJson(workers.get(key));
        if (w.state() == WorkerState.DEAD || w.state() == WorkerState.DRAINED) {
            responses.onError(Status.FAILED_PRECONDITION.withDescription("worker " + request.getWorker() + " is "
                    + w.state() + "; nothing to drain").asRuntimeException());
            return;
        }
        workers.set(key, w.withState(WorkerState.DRAINING).toJson());
        responses.onNext(AdminResponse.newBuilder().setMessage("draining " + w.id() + " (" + key
                + "): its experts move to other workers; it reports DRAINED when it can stop").build());
        responses.onCompleted();
    }

    @Override
    public void undrain(UndrainRequest request, StreamObserver<AdminResponse> responses) {
        var workers = hz.<String, String>getMap(ControlMaps.WORKERS);
        String key = workerKey(request.getWorker());
        if (key == null) {
            responses.onError(noSuchWorker(request.getWorker()).asRuntimeException());
            return;
        }
        // compare-and-set: the worker's own heartbeat rewrites its record concurrently
        for (int attempt = 0; attempt < 10; attempt++) {
            String old = workers.get(key);
            WorkerRecord w = WorkerRecord.fromJson(old);
            if (w.state() != WorkerState.DRAINING && w.state() != WorkerState.DRAINED) {
                responses.onError(Status.FAILED_PRECONDITION.withDescription("worker " + request.getWorker() + " is "
                        + w.state() + "; only a DRAINING or DRAINED worker can be undrained").asRuntimeException());
                return;
            }
            if (workers.replace(key, old, w.withState(WorkerState.ACTIVE).toJson())) {
                requestRebalance();
                responses.onNext(AdminResponse.newBuilder().setMessage("undrained " + w.id() + " (" + key + ", was "
                        + w.state() + "): ACTIVE again; a rebalance is requested to give it experts").build());
                responses.onCompleted();
                return;
            }
        }
        responses.onError(Status.ABORTED.withDescription("worker " + request.getWorker()
                + " changed concurrently ten times; try again").asRuntimeException());
    }

    private void requestRebalance() {
        hz.<String, String>getMap(ControlMaps.REQUESTS).set(ControlMaps.REBALANCE, String.valueOf(System.currentTimeMillis()));
    }

    @Override
    public void rebalance(RebalanceRequest request, StreamObserver<AdminResponse> responses) {
        requestRebalance();
        responses.onNext(AdminResponse.newBuilder().setMessage("rebalance requested: the leader plans from the current load "
                + "and rolls out a new placement if it improves balancedness by more than "
                + config.policy().migrationThreshold()).build());
        responses.onCompleted();
    }
}
