package dev.moecluster.router;

import dev.moecluster.control.ControlClient;
import dev.moecluster.control.ControlMaps;
import dev.moecluster.control.LoadReport;
import dev.moecluster.control.RouterRecord;
import dev.moecluster.core.model.ModelConfig;
import dev.moecluster.core.placement.ExpertPlacement;
import java.util.Map;
import java.util.TreeMap;
import java.util.UUID;

/**
 * A router's part in the control plane: follows the published placement (the dispatcher switches
 * between calls), reports its epoch with a heartbeat so the coordinator knows when old expert copies
 * may go, and reports tokens routed per expert for load balancing. Without a coordinator the router
 * keeps routing with the last placement it had. Tells the router each time it got a placement (its
 * readiness).
 */
final class PlacementFollower implements AutoCloseable {
    private final ControlClient client;
    private final MoeDispatcher dispatcher;
    private final DispatchStats stats;
    private final ModelConfig model;
    private final String id = "router-" + UUID.randomUUID();
    private final String address;
    private final Runnable placementKnown;

    /** @param placementKnown run after every placement handed to the dispatcher */
    PlacementFollower(ControlClient client, MoeDispatcher dispatcher, DispatchStats stats, ModelConfig model, String address,
            Runnable placementKnown) {
        this.client = client;
        this.dispatcher = dispatcher;
        this.stats = stats;
        this.model = model;
        this.address = address;
        this.placementKnown = placementKnown;
        client.watch(ControlMaps.PLACEMENT, ControlMaps.CURRENT, json -> follow(ExpertPlacement.fromJson(json)));
        client.onConnected(() -> client.currentPlacement().ifPresent(this::follow));
        client.every(client.config().heartbeatInterval().toMillis(), this::report);
    }

    private void follow(ExpertPlacement published) {
        dispatcher.update(published);
        placementKnown.run();
    }

    private void report() {
        client.currentPlacement().ifPresent(this::follow);
        long now = System.currentTimeMillis();
        client.put(ControlMaps.ROUTERS, id, new RouterRecord(id, address, dispatcher.placement().epoch(), now).toJson());
        Map<Integer, long[]> tokens = new TreeMap<>();
        stats.rowsByLayerAndExpert().forEach((layer, experts) -> {
            long[] counts = new long[model.numExperts()];
            experts.forEach((e, n) -> counts[e] = n);
            tokens.put(layer, counts);
        });
        client.put(ControlMaps.LOAD, id, new LoadReport(id, now, tokens).toJson());
    }

    @Override
    public void close() {
        client.close();
    }
}
