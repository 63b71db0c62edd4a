package dev.moecluster.cli;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.moecluster.control.ControlPlaneConfig;
import dev.moecluster.control.GrpcEndpoint;
import dev.moecluster.coordinator.CoordinatorConfig;
import dev.moecluster.coordinator.CoordinatorServer;
import dev.moecluster.core.model.Architecture;
import dev.moecluster.core.model.ModelConfig;
import dev.moecluster.core.placement.ExpertAssignment;
import dev.moecluster.core.placement.ExpertPlacement;
import dev.moecluster.core.runner.DecoderModel;
import dev.moecluster.core.tensor.DType;
import dev.moecluster.proto.AdminGrpc;
import dev.moecluster.proto.DrainRequest;
import dev.moecluster.proto.FinishReason;
import dev.moecluster.proto.GenerateRequest;
import dev.moecluster.proto.ListWorkersRequest;
import dev.moecluster.proto.SamplingParams;
import dev.moecluster.proto.TokenIds;
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
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.UUID;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;

/**
 * Readiness and liveness on gRPC health as each component starts, holds its experts or placement,
 * drains and stops; the router's graceful stop with a Generate stream in flight.
 */
class LifecycleTest {
    private final Path dir = Clusters.tinyModel(Architecture.MIXTRAL);

    /** The health status {@code address} reports for {@code service} ("" is readiness). */
    static ServingStatus health(String address, String service) {
        ManagedChannel ch = Clusters.channel(address);
        try {
            return HealthGrpc.newBlockingStub(ch).withDeadlineAfter(10, TimeUnit.SECONDS)
                    .check(HealthCheckRequest.newBuilder().setService(service).build()).getStatus();
        } finally {
            ch.shutdownNow();
        }
    }

    static boolean ready(String address) {
        return health(address, GrpcEndpoint.READINESS) == ServingStatus.SERVING;
    }

    private static String state(AdminGrpc.AdminBlockingStub admin, String address) {
        return admin.listWorkers(ListWorkersRequest.getDefaultInstance()).getWorkersList().stream()
                .filter(w -> w.getAddress().equals(address)).map(w -> w.getState()).findFirst().orElse("absent");
    }

    private static void assertAlive(String... addresses) {
        for (String a : addresses) {
            assertThat(health(a, GrpcEndpoint.LIVENESS)).as("liveness of %s", a).isEqualTo(ServingStatus.SERVING);
        }
    }

    @Test
    void workersAreReadyOnceRegisteredAndHoldingTheirAssignmentRoutersOnceThereIsAPlacement() throws Exception {
        String cluster = "moe-lifecycle-" + UUID.randomUUID();
        // two workers before the first placement, however long the first waits alone
        CoordinatorConfig cc = CoordinatorConfig.local(cluster, LocalCluster.freePort(), dir, 2, 1)
                .withInitialWait(Duration.ofMinutes(5));
        try (CoordinatorServer coordinator = CoordinatorServer.start(cc);
                ExpertWorker first = ExpertWorker.start(WorkerConfig.defaults("w", dir, new ExpertAssignment(Map.of()))
                        .withControlPlane(coordinator.controlPlane(), WorkerConfig.DEFAULT_MEMORY_BYTES));
                RouterServer router = RouterServer.start(RouterConfig.defaults(dir, ExpertPlacement.none())
                        .withControlPlane(coordinator.controlPlane()))) {
            assertThat(health(coordinator.adminAddress(), GrpcEndpoint.READINESS)).isEqualTo(ServingStatus.SERVING);
            ManagedChannel adminChannel = Clusters.channel(coordinator.adminAddress());
            try {
                var admin = AdminGrpc.newBlockingStub(adminChannel).withDeadlineAfter(60, TimeUnit.SECONDS);
                CoordinatorClusterTest.await("the first worker registers", Duration.ofSeconds(60), () -> admin
                        .listWorkers(ListWorkersRequest.getDefaultInstance()).getWorkersList().stream()
                        .anyMatch(w -> w.getAddress().equals(first.address())));
                // registered with no assignment yet: ready to be given experts (a rolling restart must not
                // wait on a rebalance); the router has no placement yet, so it is not ready
                assertThat(first.expertCount()).isZero();
                CoordinatorClusterTest.await("the registered worker is ready", Duration.ofSeconds(60),
                        () -> ready(first.address()));
                assertThat(health(router.address(), GrpcEndpoint.READINESS)).isEqualTo(ServingStatus.NOT_SERVING);
                assertAlive(first.address(), router.address(), coordinator.adminAddress());

                try (ExpertWorker second = ExpertWorker.start(WorkerConfig.defaults("w2", dir, new ExpertAssignment(Map.of()))
                        .withControlPlane(coordinator.controlPlane(), WorkerConfig.DEFAULT_MEMORY_BYTES))) {
                    ModelConfig cfg = router.model();
                    LocalCluster.awaitPlacement(router, cfg, Duration.ofSeconds(120));
                    CoordinatorClusterTest.await("workers and router ready", Duration.ofSeconds(60),
                            () -> ready(first.address()) && ready(second.address()) && ready(router.address()));
                    assertThat(first.expertCount()).isPositive();
                    assertThat(second.expertCount()).isPositive();
                    assertAlive(first.address(), second.address(), router.address());

                    // an operator's drain makes the worker not ready while it still serves
                    admin.drain(DrainRequest.newBuilder().setWorker(first.address()).build());
                    CoordinatorClusterTest.await("the drained worker is not ready", Duration.ofSeconds(60),
                            () -> health(first.address(), GrpcEndpoint.READINESS) == ServingStatus.NOT_SERVING);
                    assertAlive(first.address());
                    assertThat(ready(second.address())).isTrue();
                    assertThat(ready(router.address())).isTrue();

                    // the drained process stops; a new one under the same address (a restarted pod with a
                    // stable name) starts over: ACTIVE and ready, not stuck in the old process's DRAINED
                    String address = first.address();
                    CoordinatorClusterTest.await("the drained worker is DRAINED", Duration.ofSeconds(60),
                            () -> "DRAINED".equalsIgnoreCase(state(admin, address)));
                    first.close();
                    int port = Integer.parseInt(address.substring(address.lastIndexOf(':') + 1));
                    try (ExpertWorker again = ExpertWorker.start(WorkerConfig.defaults("w", dir, new ExpertAssignment(Map.of()))
                            .withControlPlane(coordinator.controlPlane(), WorkerConfig.DEFAULT_MEMORY_BYTES).withPort(port))) {
                        assertThat(again.address()).isEqualTo(address);
                        CoordinatorClusterTest.await("the new process under that address is ACTIVE and ready",
                                Duration.ofSeconds(60), () -> "ACTIVE".equalsIgnoreCase(state(admin, address)) && ready(address));
                    }
                }
            } finally {
                adminChannel.shutdownNow();
            }
        }
    }

    @Test
    void routerShutdownFinishesAGenerateStreamInFlightAndRefusesNewCalls() throws Exception {
        GatedBackend gated = new GatedBackend();
        ModelConfig cfg = ModelConfig.load(dir);
        int tokens = 40;
        try (ExpertWorker worker = ExpertWorker.start(WorkerConfig.defaults("gated", dir, ExpertAssignment.parse("all", cfg)), gated);
                DecoderModel reference = DecoderModel.open(dir)) {
            assertThat(ready(worker.address())).as("a static worker is ready once loaded").isTrue();
            // the stream must wait for the gate, never fail over or time out
            RouterServer router = RouterServer.start(RouterConfig.defaults(dir,
                    ExpertPlacement.roundRobin(List.of(worker.address()), cfg, 1)).withExpertTimeout(Duration.ofMinutes(5)));
            String address = router.address();
            ManagedChannel channel = Clusters.channel(address);
            try {
                assertThat(ready(address)).as("a router with a static placement is ready at once").isTrue();
                int[] prompt = {5, 17, 42, 7};
                gated.arm();
                CompletableFuture<GenerateClusterTest.Generated> stream = CompletableFuture.supplyAsync(
                        () -> GenerateClusterTest.collect(Clusters.stub(channel).generate(longGeneration(prompt, tokens))));
                assertThat(gated.awaitEntered()).as("the stream reached the worker").isTrue();

                CompletableFuture<Boolean> shutdown = CompletableFuture.supplyAsync(() -> router.shutdown(Duration.ofMinutes(2)));
                CoordinatorClusterTest.await("router not ready", Duration.ofSeconds(30),
                        () -> health(address, GrpcEndpoint.READINESS) == ServingStatus.NOT_SERVING);
                assertAlive(address);
                assertThatThrownBy(() -> Clusters.stub(channel).moeForward(
                        Clusters.request(0, Clusters.hidden(cfg, 2, 1, DType.F32), DType.F32)))
                        .isInstanceOfSatisfying(StatusRuntimeException.class, e -> {
                            assertThat(e.getStatus().getCode()).isEqualTo(Status.Code.UNAVAILABLE);
                            assertThat(e.getStatus().getDescription()).contains("router is shutting down");
                        });
                assertThatThrownBy(() -> GenerateClusterTest.collect(Clusters.stub(channel).generate(longGeneration(prompt, 4))))
                        .isInstanceOfSatisfying(StatusRuntimeException.class, e -> {
                            assertThat(e.getStatus().getCode()).isEqualTo(Status.Code.UNAVAILABLE);
                            assertThat(e.getStatus().getDescription()).contains("router is shutting down");
                        });
                assertThat(stream).isNotDone();
                assertThat(shutdown).isNotDone();

                gated.release();
                GenerateClusterTest.Generated g = stream.get(120, TimeUnit.SECONDS);
                assertThat(g.ids()).hasSize(tokens);
                assertThat(g.ids()).isEqualTo(Arrays.stream(reference.generateGreedy(prompt, tokens, dev.moecluster.core.tensor.DType.BF16)).boxed().toList());
                assertThat(g.last().getFinishReason()).isEqualTo(FinishReason.FINISH_REASON_LENGTH);
                assertThat(shutdown.get(120, TimeUnit.SECONDS)).as("every call finished within the grace").isTrue();
                assertThatThrownBy(() -> health(address, GrpcEndpoint.LIVENESS))
                        .as("the router stopped serving").isInstanceOf(StatusRuntimeException.class);
            } finally {
                gated.release();
                channel.shutdownNow();
                router.close();
            }
        }
    }

    @Test
    void workerDrainGivesUpAtItsTimeoutWhenNoCoordinatorAnswersAndAStaticWorkerJustCloses() throws Exception {
        var nobody = ControlPlaneConfig.of(List.of("127.0.0.1:" + LocalCluster.freePort()));
        ExpertWorker orphan = ExpertWorker.start(WorkerConfig.defaults("orphan", dir, new ExpertAssignment(Map.of()))
                .withControlPlane(nobody, WorkerConfig.DEFAULT_MEMORY_BYTES));
        String orphanAddress = orphan.address();
        assertThat(health(orphanAddress, GrpcEndpoint.READINESS)).isEqualTo(ServingStatus.NOT_SERVING);
        assertAlive(orphanAddress);
        assertThat(orphan.drainAndClose(Duration.ofSeconds(2))).as("drained").isFalse();
        assertThatThrownBy(() -> health(orphanAddress, GrpcEndpoint.LIVENESS)).isInstanceOf(StatusRuntimeException.class);

        ExpertWorker fixed = ExpertWorker.start(WorkerConfig.defaults("static", dir, ExpertAssignment.parse("all", ModelConfig.load(dir))));
        String fixedAddress = fixed.address();
        assertThat(ready(fixedAddress)).isTrue();
        assertThat(fixed.drainAndClose(Duration.ofMinutes(2))).as("drained").isTrue();
        assertThatThrownBy(() -> health(fixedAddress, GrpcEndpoint.LIVENESS)).isInstanceOf(StatusRuntimeException.class);
    }

    /** Greedy, past any end-of-sequence token, so the stream has exactly {@code tokens} tokens. */
    static GenerateRequest longGeneration(int[] prompt, int tokens) {
        return GenerateRequest.newBuilder()
                .setTokenIds(TokenIds.newBuilder().addAllIds(Arrays.stream(prompt).boxed().toList()))
                .setSampling(SamplingParams.newBuilder().setMaxTokens(tokens).setTemperature(0f).setIgnoreEos(true))
                .build();
    }
}
