package dev.moecluster.cli;

import static dev.moecluster.cli.CoordinatorClusterTest.await;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.moecluster.control.BearerToken;
import dev.moecluster.control.ControlAccess;
import dev.moecluster.control.ControlMaps;
import dev.moecluster.control.ControlPlaneConfig;
import dev.moecluster.control.LoadReport;
import dev.moecluster.control.RouterRecord;
import dev.moecluster.control.WorkerRecord;
import dev.moecluster.control.WorkerState;
import dev.moecluster.coordinator.CoordinatorConfig;
import dev.moecluster.coordinator.CoordinatorServer;
import dev.moecluster.core.model.Architecture;
import dev.moecluster.core.model.ModelConfig;
import dev.moecluster.core.placement.ExpertAssignment;
import dev.moecluster.core.placement.ExpertPlacement;
import dev.moecluster.proto.ControlGrpc;
import dev.moecluster.proto.PlacementUpdate;
import dev.moecluster.proto.RouterHeartbeatRequest;
import dev.moecluster.proto.WatchPlacementRequest;
import dev.moecluster.proto.WorkerHeartbeatRequest;
import dev.moecluster.proto.WorkerHeartbeatResponse;
import dev.moecluster.router.RouterConfig;
import dev.moecluster.router.RouterServer;
import dev.moecluster.worker.ExpertWorker;
import dev.moecluster.worker.WorkerConfig;
import io.grpc.ManagedChannel;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.UUID;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;

/**
 * The coordinators' Control API, the only way into the cluster state for workers and routers, trusts no
 * client: each role needs its own token, and what a caller writes is checked against the model before it
 * reaches the registry. Components holding the right tokens run as before.
 */
class ControlApiTest {
    private static final String EVIL = "6.6.6.6:50061";
    private final Path dir = Clusters.tinyModel(Architecture.MIXTRAL);

    @Test
    void aRogueClientCanNeitherRegisterNorReportWhileTokenHoldingComponentsServe() throws Exception {
        CoordinatorConfig cc = CoordinatorConfig.local("moe-control-" + UUID.randomUUID(), LocalCluster.freePort(), dir, 2, 1)
                .withControl(0, new ControlAccess(BearerToken.of("worker-secret"), BearerToken.of("router-secret")));
        List<ExpertWorker> workers = new ArrayList<>();
        try (CoordinatorServer coordinator = CoordinatorServer.start(cc)) {
            ControlPlaneConfig asWorker = coordinator.controlPlane().withToken(BearerToken.of("worker-secret"));
            for (int i = 0; i < 2; i++) {
                workers.add(ExpertWorker.start(WorkerConfig.defaults("worker-" + i, dir, new ExpertAssignment(Map.of()))
                        .withControlPlane(asWorker, WorkerConfig.DEFAULT_MEMORY_BYTES)));
            }
            try (RouterServer router = RouterServer.start(RouterConfig.defaults(dir, ExpertPlacement.none())
                    .withControlPlane(coordinator.controlPlane().withToken(BearerToken.of("router-secret"))))) {
                ModelConfig cfg = router.model();
                ExpertPlacement placed = LocalCluster.awaitPlacement(router, cfg, Duration.ofSeconds(60));
                assertThat(placed.workers()).containsExactlyInAnyOrder(workers.get(0).address(), workers.get(1).address());
                await("the router's heartbeat reached the registry", Duration.ofSeconds(30),
                        () -> !coordinator.hazelcast().getMap(ControlMaps.ROUTERS).isEmpty());

                ManagedChannel channel = Clusters.channel(coordinator.controlAddress());
                try {
                    WorkerHeartbeatRequest fake = WorkerHeartbeatRequest.newBuilder().setFirst(true).setWorkerJson(
                            new WorkerRecord("evil", EVIL, "cpu", 1L << 40, WorkerState.ACTIVE, Map.of(), 0, 0).toJson()).build();
                    assertCode(() -> control(channel, null).workerHeartbeat(fake), Status.Code.UNAUTHENTICATED);
                    assertCode(() -> control(channel, "guessed").workerHeartbeat(fake), Status.Code.UNAUTHENTICATED);
                    assertCode(() -> control(channel, "router-secret").workerHeartbeat(fake), Status.Code.PERMISSION_DENIED);
                    // a worker's token does not open the router's side: no placement stream, no load reports
                    assertCode(() -> control(channel, "worker-secret").watchPlacement(WatchPlacementRequest.getDefaultInstance())
                            .hasNext(), Status.Code.PERMISSION_DENIED);
                    RouterHeartbeatRequest load = routerHeartbeat("rogue-router", Map.of(cfg.moeLayerList().getFirst(),
                            new long[] {1_000_000, 0, 0, 0}));
                    assertCode(() -> control(channel, "worker-secret").routerHeartbeat(load), Status.Code.PERMISSION_DENIED);
                    assertCode(() -> control(channel, null).routerHeartbeat(load), Status.Code.UNAUTHENTICATED);

                    // with the right token, records that do not fit the model are refused before they are written
                    WorkerHeartbeatRequest outside = WorkerHeartbeatRequest.newBuilder().setWorkerJson(new WorkerRecord("odd",
                            "10.0.0.9:50061", "cpu", 1, WorkerState.ACTIVE, Map.of(cfg.moeLayerList().getFirst(), Set.of(999)), 0, 0)
                            .toJson()).build();
                    assertCode(() -> control(channel, "worker-secret").workerHeartbeat(outside), Status.Code.INVALID_ARGUMENT);
                    assertCode(() -> control(channel, "worker-secret").workerHeartbeat(
                            WorkerHeartbeatRequest.newBuilder().setWorkerJson("{not json").build()), Status.Code.INVALID_ARGUMENT);
                    assertCode(() -> control(channel, "router-secret").routerHeartbeat(routerHeartbeat("r", Map.of(99, new long[1]))),
                            Status.Code.INVALID_ARGUMENT);
                    assertThat(coordinator.hazelcast().<String, String>getMap(ControlMaps.WORKERS).keySet())
                            .containsExactlyInAnyOrder(workers.get(0).address(), workers.get(1).address());
                    assertThat(coordinator.hazelcast().getMap(ControlMaps.LOAD).keySet()).doesNotContain("rogue-router", "r");

                    // the real ones: a worker heartbeat answers with the registry's record and its assignment,
                    // the placement stream starts with the published placement and the workers it names
                    ExpertWorker w = workers.getFirst();
                    WorkerHeartbeatResponse answer = control(channel, "worker-secret").workerHeartbeat(WorkerHeartbeatRequest
                            .newBuilder().setWorkerJson(coordinator.hazelcast().<String, String>getMap(ControlMaps.WORKERS)
                                    .get(w.address())).build());
                    assertThat(WorkerRecord.fromJson(answer.getWorkerJson()).state()).isEqualTo(WorkerState.ACTIVE);
                    assertThat(answer.getAssignmentJson()).isEqualTo(
                            coordinator.hazelcast().<String, String>getMap(ControlMaps.ASSIGNMENTS).get(w.address()));
                    Iterator<PlacementUpdate> stream = control(channel, "router-secret").watchPlacement(
                            WatchPlacementRequest.getDefaultInstance());
                    PlacementUpdate first = stream.next();
                    assertThat(ExpertPlacement.fromJson(first.getPlacementJson())).isEqualTo(router.placement());
                    assertThat(first.getWorkerJsonList()).hasSize(2);
                } finally {
                    channel.shutdownNow();
                }
                assertThat(router.placement()).isEqualTo(placed);
            }
        } finally {
            workers.forEach(ExpertWorker::close);
        }
    }

    private static RouterHeartbeatRequest routerHeartbeat(String id, Map<Integer, long[]> tokens) {
        long now = System.currentTimeMillis();
        return RouterHeartbeatRequest.newBuilder().setRouterJson(new RouterRecord(id, "10.0.0.7:50051", 1, now).toJson())
                .setLoadJson(new LoadReport(id, now, tokens).toJson()).build();
    }

    private static ControlGrpc.ControlBlockingStub control(ManagedChannel channel, String token) {
        var stub = ControlGrpc.newBlockingStub(channel).withDeadlineAfter(15, TimeUnit.SECONDS);
        return token == null ? stub : stub.withCallCredentials(BearerToken.of(token).callCredentials());
    }

    private static void assertCode(org.assertj.core.api.ThrowableAssert.ThrowingCallable call, Status.Code code) {
        assertThatThrownBy(call).isInstanceOf(StatusRuntimeException.class)
                .satisfies(e -> assertThat(((StatusRuntimeException) e).getStatus().getCode()).isEqualTo(code));
    }
}
