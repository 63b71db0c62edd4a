package dev.moecluster.router;

import dev.moecluster.control.ControlClient;
import dev.moecluster.control.LoadReport;
import dev.moecluster.control.PlacementGate;
import dev.moecluster.control.RouterRecord;
import dev.moecluster.control.WorkerRecord;
import dev.moecluster.core.model.ModelConfig;
import dev.moecluster.core.placement.ExpertPlacement;
import dev.moecluster.proto.PlacementUpdate;
import dev.moecluster.proto.RouterHeartbeatRequest;
import dev.moecluster.proto.WorkerHealth;
import io.prometheus.metrics.core.metrics.Counter;
import io.prometheus.metrics.model.registry.PrometheusRegistry;
import java.util.ArrayDeque;
import java.util.HashMap;
import java.util.Map;
import java.util.TreeMap;
import java.util.UUID;
import java.util.logging.Logger;

/**
 * A router's part in the control plane: follows the published placement (the dispatcher switches
 * between calls), reports its epoch with a heartbeat so the coordinator knows when old expert copies
 * may go, reports tokens routed per expert for load balancing, and reports how each worker answered
 * its batches (the coordinators' only view of a worker whose data plane fails while its heartbeats go
 * on). Without a coordinator the router
 * keeps routing with the last placement it had. Tells the router each time it got a placement (its
 * readiness). Acts only on placements {@link PlacementGate} accepts (newer epoch within bounds, the
 * model's shape, registered workers, the leader's signature when a key is configured).
 */
final class PlacementFollower implements AutoCloseable {
    private static final Logger LOG = Logger.getLogger(PlacementFollower.class.getName());
    private final ControlClient client;
    private final MoeDispatcher dispatcher;
    private final DispatchStats stats;
    private final ModelConfig model;
    private final String id = "router-" + UUID.randomUUID();
    private final String address;
    private final Runnable placementKnown;
    private final PlacementGate gate;
    private final Counter rejected;
    private String lastRejected;
    /**
     * Batches failed and answered per worker, by heartbeat, over the last {@value #HEALTH_WINDOW_MILLIS} ms:
     * a router that steers around a failing worker sends it few batches, too few to judge in one heartbeat.
     */
    private final ArrayDeque<Map.Entry<Long, Map<String, long[]>>> recentHealth = new ArrayDeque<>();
    static final long HEALTH_WINDOW_MILLIS = 10_000;

    /**
     * @param placementKnown run after every placement handed to the dispatcher
     * @param registry where {@code moe_router_placements_rejected_total} is registered
     */
    PlacementFollower(ControlClient client, MoeDispatcher dispatcher, DispatchStats stats, ModelConfig model, String address,
            Runnable placementKnown, PrometheusRegistry registry) {
        this.client = client;
        this.dispatcher = dispatcher;
        this.stats = stats;
        this.model = model;
        this.address = address;
        this.placementKnown = placementKnown;
        this.gate = new PlacementGate(client.config().placementKey(), model.moeLayerList(), model.numExperts());
        this.rejected = Counter.builder().name("moe_router_placements_rejected_total")
                .help("Placement records read from the control plane and not acted on: forged, unsigned, replayed or not matching the model")
                .labelNames("reason").register(registry);
        for (PlacementGate.Rejection r : PlacementGate.Rejection.values()) {
            rejected.labelValues(r.label); // every reason exported from the start, at 0, so rates and alerts see it
        }
        client.watchPlacement(this::consider);
        client.every(client.config().heartbeatInterval().toMillis(), this::report);
    }

    /**
     * Acts on a published placement record only when the gate accepts it: the coordinators pass on what
     * the leader signed, and only its signature (with a key configured) proves who wrote it.
     */
    private synchronized void consider(PlacementUpdate update) {
        if (update.getPlacementJson().isEmpty()) {
            return; // nothing published yet: keep the static placement, if any
        }
        String json = update.getPlacementJson();
        Map<String, WorkerRecord> workers = new HashMap<>();
        for (String record : update.getWorkerJsonList()) {
            try {
                WorkerRecord w = WorkerRecord.fromJson(record);
                workers.put(w.address(), w);
            } catch (RuntimeException unreadable) {
                // a worker whose record cannot be read counts as not registered: the gate says so
            }
        }
        PlacementGate.Verdict verdict = gate.check(json, dispatcher.placement().epoch(), workers::get);
        if (verdict.accepted()) {
            follow(verdict.placement());
        } else if (verdict.rejection() == null) {
            placementKnown.run(); // the placement in use, read again: still known
        } else {
            rejected.labelValues(verdict.rejection().label).inc();
            if (!json.equals(lastRejected)) { // the heartbeat reads it again: warn once per record
                lastRejected = json;
                LOG.warning("ignored a placement record: " + verdict.message());
            }
        }
    }

    private void follow(ExpertPlacement published) {
        // failures of a worker the placement no longer gives experts are settled; a worker that comes back
        // at the same address (a restarted pod) starts with a clean record, not its predecessor's streak
        for (String worker : dispatcher.placement().workers()) {
            if (!published.workers().contains(worker) || published.heldBy(published.indexOf(worker)).isEmpty()) {
                stats.forgetWorkerHealth(worker);
                synchronized (recentHealth) {
                    recentHealth.forEach(e -> e.getValue().remove(worker));
                }
            }
        }
        dispatcher.update(published);
        placementKnown.run();
    }

    /** The heartbeat: this router's epoch and routed load; the answer is the published placement, considered as the stream's are. */
    private void report() {
        long now = System.currentTimeMillis();
        Map<Integer, long[]> tokens = new TreeMap<>();
        stats.rowsByLayerAndExpert().forEach((layer, experts) -> {
            long[] counts = new long[model.numExperts()];
            experts.forEach((e, n) -> counts[e] = n);
            tokens.put(layer, counts);
        });
        RouterHeartbeatRequest.Builder heartbeat = RouterHeartbeatRequest.newBuilder()
                .setRouterJson(new RouterRecord(id, address, dispatcher.placement().epoch(), now).toJson())
                .setLoadJson(new LoadReport(id, now, tokens).toJson());
        Map<String, long[]> health = new TreeMap<>();
        synchronized (recentHealth) { // follow() forgets workers from another thread
            recentHealth.addLast(Map.entry(now, stats.takeWorkerHealth()));
            while (now - recentHealth.peekFirst().getKey() > HEALTH_WINDOW_MILLIS) {
                recentHealth.removeFirst();
            }
            recentHealth.forEach(e -> e.getValue().forEach((worker, counts) -> {
                long[] sum = health.computeIfAbsent(worker, k -> new long[3]);
                sum[0] += counts[0];
                sum[1] += counts[1];
                sum[2] = counts[2]; // the latest entry naming the worker has its streak now (a streak above 0 is always named)
            }));
        }
        // a streak with no failure in the window is old news: the worker lost its experts and gets no batches
        // to answer, and reporting it for ever would keep it SUSPECT for ever
        health.forEach((worker, counts) -> heartbeat.addWorkerHealth(WorkerHealth.newBuilder().setAddress(worker)
                .setFailures(counts[0]).setAnswers(counts[1]).setFailingStreak(counts[0] > 0 ? counts[2] : 0)));
        client.routerHeartbeat(heartbeat.build()).ifPresent(this::consider);
    }

    @Override
    public void close() {
        client.close();
    }
}
