package dev.moecluster.cli;

import static dev.moecluster.cli.CoordinatorClusterTest.await;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.moecluster.control.BearerToken;
import dev.moecluster.control.ControlMaps;
import dev.moecluster.control.ScopedTokens;
import dev.moecluster.control.WorkerRecord;
import dev.moecluster.control.WorkerState;
import dev.moecluster.coordinator.CoordinatorConfig;
import dev.moecluster.coordinator.CoordinatorServer;
import dev.moecluster.core.model.Architecture;
import dev.moecluster.core.moe.ReferenceMoeBlock;
import dev.moecluster.core.placement.ExpertAssignment;
import dev.moecluster.core.placement.ExpertPlacement;
import dev.moecluster.proto.AdminGrpc;
import dev.moecluster.proto.AdminStatusRequest;
import dev.moecluster.proto.DrainRequest;
import dev.moecluster.proto.RebalanceRequest;
import dev.moecluster.proto.UndrainRequest;
import dev.moecluster.router.RouterConfig;
import dev.moecluster.router.RouterServer;
import dev.moecluster.worker.ExpertWorker;
import dev.moecluster.worker.WorkerConfig;
import io.grpc.ManagedChannel;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.health.v1.HealthCheckRequest;
import io.grpc.health.v1.HealthCheckResponse.ServingStatus;
import io.grpc.health.v1.HealthGrpc;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.UUID;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;

/** The Admin API by role: no token changes nothing, a read token only reads, a write token drains and undrains. */
class AdminAuthorizationTest {
    private final Path dir = Clusters.tinyModel(Architecture.MIXTRAL);

    @Test
    void onlyAWriteTokenDrainsAndAnUndrainedWorkerTakesExpertsAgain() throws Exception {
        CoordinatorConfig cc = CoordinatorConfig.local("moe-admin-" + UUID.randomUUID(), LocalCluster.freePort(), dir, 2, 1)
                .withAdminTokens(new ScopedTokens(BearerToken.of("w-secret"), BearerToken.of("r-secret"))).withMetricsPort(0);
        List<ExpertWorker> workers = new ArrayList<>();
        try (CoordinatorServer coordinator = CoordinatorServer.start(cc)) {
            for (int i = 0; i < 2; i++) {
                workers.add(ExpertWorker.start(WorkerConfig.defaults("worker-" + i, dir, new ExpertAssignment(Map.of()))
                        .withControlPlane(coordinator.controlPlane(), WorkerConfig.DEFAULT_MEMORY_BYTES)));
            }
            ExpertWorker target = workers.getFirst();
            ManagedChannel ch = Clusters.channel(coordinator.adminAddress());
            // traffic gives the planner load to balance: a rebalance moves experts onto the undrained worker
            try (RouterServer router = RouterServer.start(RouterConfig.defaults(dir, ExpertPlacement.none())
                            .withControlPlane(coordinator.controlPlane()));
                    ReferenceMoeBlock reference = ReferenceMoeBlock.open(dir);
                    CoordinatorClusterTest.Traffic traffic = trafficOnceRouting(router, reference)) {
                await("both workers hold experts", Duration.ofSeconds(60),
                        () -> workers.stream().allMatch(w -> w.expertCount() > 0)
                                && admin(ch, "r-secret").status(AdminStatusRequest.getDefaultInstance()).getRollout().equals("idle"));
                DrainRequest drain = DrainRequest.newBuilder().setWorker("worker-0").build();

                assertThatThrownBy(() -> admin(ch, null).drain(drain)).satisfies(e -> assertCode(e, Status.Code.UNAUTHENTICATED));
                assertThatThrownBy(() -> admin(ch, "guessed").drain(drain)).satisfies(e -> assertCode(e, Status.Code.UNAUTHENTICATED));
                assertThatThrownBy(() -> admin(ch, null).status(AdminStatusRequest.getDefaultInstance()))
                        .satisfies(e -> assertCode(e, Status.Code.UNAUTHENTICATED));
                assertThatThrownBy(() -> admin(ch, "r-secret").drain(drain)).satisfies(e -> assertCode(e, Status.Code.PERMISSION_DENIED));
                assertThatThrownBy(() -> admin(ch, "r-secret").rebalance(RebalanceRequest.getDefaultInstance()))
                        .satisfies(e -> assertCode(e, Status.Code.PERMISSION_DENIED));
                assertThat(admin(ch, "r-secret").status(AdminStatusRequest.getDefaultInstance()).getWorkersByStateMap())
                        .isEqualTo(Map.of("ACTIVE", 2));
                // each refused call is counted with its code
                Exposition metrics = Exposition.scrape(coordinator.metricsPort());
                assertThat(adminCalls(metrics, "Drain", "UNAUTHENTICATED")).isEqualTo(2);
                assertThat(adminCalls(metrics, "Status", "UNAUTHENTICATED")).isEqualTo(1);
                assertThat(adminCalls(metrics, "Drain", "PERMISSION_DENIED")).isEqualTo(1);
                assertThat(adminCalls(metrics, "Rebalance", "PERMISSION_DENIED")).isEqualTo(1);
                assertThat(adminCalls(metrics, "Status", "OK")).isPositive();
                // the refused calls changed nothing
                assertThat(state(coordinator, target)).isEqualTo(WorkerState.ACTIVE);
                assertThat(coordinator.hazelcast().getMap(ControlMaps.REQUESTS).containsKey(ControlMaps.REBALANCE)).isFalse();
                assertThat(target.expertCount()).isPositive();
                assertThat(ready(target)).isEqualTo(ServingStatus.SERVING);

                assertThat(admin(ch, "w-secret").drain(drain).getMessage()).contains("draining worker-0");
                await("worker-0 drained", Duration.ofSeconds(60),
                        () -> state(coordinator, target) == WorkerState.DRAINED && target.expertCount() == 0);
                assertThat(ready(target)).isEqualTo(ServingStatus.NOT_SERVING);

                assertThatThrownBy(() -> admin(ch, "r-secret").undrain(UndrainRequest.newBuilder().setWorker("worker-0").build()))
                        .satisfies(e -> assertCode(e, Status.Code.PERMISSION_DENIED));
                assertThat(admin(ch, "w-secret").undrain(UndrainRequest.newBuilder().setWorker(target.address()).build())
                        .getMessage()).contains("undrained worker-0", "was DRAINED");
                await("worker-0 active, ready and holding experts again", Duration.ofSeconds(60),
                        () -> state(coordinator, target) == WorkerState.ACTIVE && target.expertCount() > 0
                                && ready(target) == ServingStatus.SERVING);
                assertThatThrownBy(() -> admin(ch, "w-secret").undrain(UndrainRequest.newBuilder().setWorker("worker-0").build()))
                        .satisfies(e -> assertCode(e, Status.Code.FAILED_PRECONDITION));
                assertThatThrownBy(() -> admin(ch, "w-secret").undrain(UndrainRequest.newBuilder().setWorker("nobody").build()))
                        .satisfies(e -> assertCode(e, Status.Code.NOT_FOUND));
                int before = traffic.ok.get();
                await("traffic after the undrain", Duration.ofSeconds(30), () -> traffic.ok.get() > before + 5);
                traffic.close();
                assertThat(traffic.failed.get()).as("failed requests: %s", traffic.errors).isZero();
            } finally {
                ch.shutdownNow();
            }
        } finally {
            workers.forEach(ExpertWorker::close);
        }
    }

    private static CoordinatorClusterTest.Traffic trafficOnceRouting(RouterServer router, ReferenceMoeBlock reference)
            throws Exception {
        LocalCluster.awaitPlacement(router, router.model(), Duration.ofSeconds(60));
        return new CoordinatorClusterTest.Traffic(router.address(), router.model(), reference);
    }

    /** moe_coordinator_requests_total of Admin API calls to {@code method} that ended with {@code code}. */
    private static double adminCalls(Exposition metrics, String method, String code) {
        return metrics.sum("moe_coordinator_requests_total", s -> s.is("api", "admin") && s.is("method", method) && s.is("code", code));
    }

    private static AdminGrpc.AdminBlockingStub admin(ManagedChannel ch, String token) {
        var stub = AdminGrpc.newBlockingStub(ch).withDeadlineAfter(15, TimeUnit.SECONDS);
        return token == null ? stub : stub.withCallCredentials(BearerToken.of(token).callCredentials());
    }

    private static void assertCode(Throwable e, Status.Code code) {
        assertThat(e).isInstanceOf(StatusRuntimeException.class);
        assertThat(((StatusRuntimeException) e).getStatus().getCode()).isEqualTo(code);
    }

    private static WorkerState state(CoordinatorServer coordinator, ExpertWorker worker) {
        String json = coordinator.hazelcast().<String, String>getMap(ControlMaps.WORKERS).get(worker.address());
        return WorkerRecord.fromJson(json).state();
    }

    private static ServingStatus ready(ExpertWorker worker) {
        ManagedChannel ch = Clusters.channel("127.0.0.1:" + worker.port());
        try {
            return HealthGrpc.newBlockingStub(ch).withDeadlineAfter(10, TimeUnit.SECONDS)
                    .check(HealthCheckRequest.getDefaultInstance()).getStatus();
        } finally {
            ch.shutdownNow();
        }
    }
}
