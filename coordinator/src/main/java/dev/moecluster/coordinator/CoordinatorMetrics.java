package dev.moecluster.coordinator;

import dev.moecluster.control.GrpcEndpoint;
import dev.moecluster.control.RecordSigning;
import dev.moecluster.control.WorkerRecord;
import dev.moecluster.control.WorkerState;
import dev.moecluster.core.placement.ExpertPlacement;
import io.prometheus.metrics.core.metrics.Counter;
import io.prometheus.metrics.core.metrics.CounterWithCallback;
import io.prometheus.metrics.core.metrics.GaugeWithCallback;
import io.prometheus.metrics.model.registry.PrometheusRegistry;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * The coordinator's Prometheus series, read from the shared maps and the control loop when scraped.
 * Rollout counters move only on the member that led when the rollout started. Calls to its gRPC APIs are
 * counted by the endpoints serving them.
 */
final class CoordinatorMetrics {
    private static final List<String> ROLLOUT_KINDS = List.of("initial", "repair", "rebalance");

    private CoordinatorMetrics() {}

    /** The coordinator's API names in {@code moe_coordinator_requests_total}. */
    static final String CONTROL_API = "control";
    static final String ADMIN_API = "admin";

    /** Calls to this coordinator's gRPC APIs finished, each counted once with the code it ended with. */
    static final class Requests {
        private final Counter counter;

        private Requests(Counter counter) {
            this.counter = counter;
        }

        /** Counts the calls to {@code api} ({@link #CONTROL_API} or {@link #ADMIN_API}) as its endpoint reports them. */
        GrpcEndpoint.CallCounter of(String api) {
            return (method, code) -> counter.labelValues(api, method, code.name()).inc();
        }
    }

    /** Registers the coordinator's series; returns the counter of calls to its APIs. */
    static Requests register(PrometheusRegistry registry, Reconciler reconciler) {
        Counter requests = Counter.builder().name("moe_coordinator_requests_total")
                .help("Control and Admin API calls finished, by API (control, admin), method and gRPC status code;"
                        + " refused calls (no token, another role's token, a worker host its certificate does not name) included")
                .labelNames("api", "method", "code")
                .register(registry);
        GaugeWithCallback.builder().name("moe_coordinator_leader").help("1 on the member running the control loop, else 0")
                .callback(cb -> cb.call(reconciler.isLeader() ? 1 : 0)).register(registry);
        GaugeWithCallback.builder().name("moe_coordinator_leader_term")
                .help("The leader's term this coordinator holds (it grows with every change of leader); 0 when it does not lead")
                .callback(cb -> cb.call(Math.max(0, reconciler.term()))).register(registry);
        GaugeWithCallback.builder().name("moe_coordinator_workers").help("Registered workers by state")
                .labelNames("state")
                .callback(cb -> {
                    for (Map.Entry<WorkerState, Integer> e : reconciler.workersByState().entrySet()) {
                        cb.call(e.getValue(), e.getKey().name().toLowerCase(Locale.ROOT));
                    }
                })
                .register(registry);
        GaugeWithCallback.builder().name("moe_coordinator_balancedness")
                .help("Mean over max expert-parallel load per worker (1 is perfectly even), as of the leader's last tick")
                .callback(cb -> cb.call(reconciler.balancedness())).register(registry);
        GaugeWithCallback.builder().name("moe_coordinator_min_replicas")
                .help("Fewest copies of any expert in the current placement (0 before the first)")
                .callback(cb -> cb.call(minReplicas(reconciler.currentPlacement()))).register(registry);
        GaugeWithCallback.builder().name("moe_coordinator_experts_without_live_replica")
                .help("Experts of the current placement none of whose workers is alive (active or draining): calls routed to them fail")
                .callback(cb -> {
                    try {
                        cb.call(expertsWithoutLiveReplica(reconciler.currentPlacement(), reconciler.workers()));
                    } catch (RuntimeException registryUnreachable) {
                        // no sample rather than a failed scrape while the member cannot read the registry
                    }
                })
                .register(registry);
        GaugeWithCallback.builder().name("moe_coordinator_placement_epoch").help("Epoch of the current placement")
                .callback(cb -> {
                    ExpertPlacement p = reconciler.currentPlacement();
                    cb.call(p == null ? 0 : p.epoch());
                })
                .register(registry);
        CounterWithCallback.builder().name("moe_coordinator_rollouts_total")
                .help("Placement rollouts started, by kind: initial, repair (dead or draining workers), rebalance")
                .labelNames("kind")
                .callback(cb -> ROLLOUT_KINDS.forEach(kind -> cb.call(reconciler.rolloutsStarted(kind), kind)))
                .register(registry);
        CounterWithCallback.builder().name("moe_coordinator_expert_loads_total")
                .help("Expert copies loaded onto workers by rollouts, by rollout kind (initial, repair, rebalance)")
                .labelNames("kind")
                .callback(cb -> ROLLOUT_KINDS.forEach(kind -> cb.call(reconciler.expertLoads(kind), kind)))
                .register(registry);
        CounterWithCallback.builder().name("moe_coordinator_expert_unloads_total")
                .help("Expert copies unloaded from workers by rollouts (moved experts' old copies), by rollout kind")
                .labelNames("kind")
                .callback(cb -> ROLLOUT_KINDS.forEach(kind -> cb.call(reconciler.expertUnloads(kind), kind)))
                .register(registry);
        CounterWithCallback.builder().name("moe_coordinator_records_rejected_total")
                .help("Records in the shared maps the leader had not written (forged, replayed, malformed, unsigned) and replaced or dropped, by kind")
                .labelNames("kind")
                .callback(cb -> List.of(RecordSigning.PLACEMENT, RecordSigning.ROLLOUT)
                        .forEach(kind -> cb.call(reconciler.recordsRejected(kind), kind)))
                .register(registry);
        return new Requests(requests);
    }

    /** (layer, expert) pairs whose every replica sits on a worker that is dead or gone from the registry. */
    static int expertsWithoutLiveReplica(ExpertPlacement placement, Map<String, WorkerRecord> workers) {
        if (placement == null) {
            return 0;
        }
        int orphans = 0;
        for (int[][] experts : placement.layers().values()) {
            for (int[] replicas : experts) {
                boolean live = false;
                for (int w : replicas) {
                    WorkerRecord r = workers.get(placement.workers().get(w));
                    live |= r != null && (r.state() == WorkerState.ACTIVE || r.state() == WorkerState.DRAINING);
                }
                orphans += live ? 0 : 1;
            }
        }
        return orphans;
    }

    private static int minReplicas(ExpertPlacement placement) {
        if (placement == null || placement.layers().isEmpty()) {
            return 0;
        }
        int min = Integer.MAX_VALUE;
        for (int[][] experts : placement.layers().values()) {
            for (int[] replicas : experts) {
                min = Math.min(min, replicas.length);
            }
        }
        return min;
    }
}
