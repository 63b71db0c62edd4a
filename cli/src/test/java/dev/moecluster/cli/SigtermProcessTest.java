package dev.moecluster.cli;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.moecluster.control.GrpcEndpoint;
import dev.moecluster.coordinator.CoordinatorConfig;
import dev.moecluster.coordinator.CoordinatorServer;
import dev.moecluster.core.model.Architecture;
import dev.moecluster.core.model.ModelConfig;
import dev.moecluster.core.moe.ReferenceMoeBlock;
import dev.moecluster.core.placement.ExpertAssignment;
import dev.moecluster.core.placement.ExpertPlacement;
import dev.moecluster.core.tensor.DType;
import dev.moecluster.proto.FinishReason;
import dev.moecluster.proto.AdminGrpc;
import dev.moecluster.proto.ListWorkersRequest;
import dev.moecluster.router.RouterConfig;
import dev.moecluster.router.RouterServer;
import dev.moecluster.worker.ExpertWorker;
import dev.moecluster.worker.WorkerConfig;
import io.grpc.ManagedChannel;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.health.v1.HealthCheckResponse.ServingStatus;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.UUID;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;

/**
 * SIGTERM on real processes. A worker under steady MoeForward traffic: with one copy of each expert,
 * the coordinator must move the worker's experts before it may stop; the worker waits for DRAINED,
 * then exits 0, and no request fails. A router with a Generate stream in flight: it refuses new calls,
 * finishes the stream, then exits 0.
 */
class SigtermProcessTest {
    private final Path dir = Clusters.tinyModel(Architecture.MIXTRAL);

    @Test
    void sigtermedWorkerProcessIsDrainedThenExitsZeroWithoutAFailedRequest() throws Exception {
        String cluster = "moe-sigterm-" + UUID.randomUUID();
        int hzPort = LocalCluster.freePort();
        List<Process> processes = new ArrayList<>();
        Path logs = ProcessFaultTest.logs();
        // one replica: every expert of the drained worker has to move; wait for all three before placing
        CoordinatorConfig cc = CoordinatorConfig.local(cluster, hzPort, dir, 3, 1).withInitialWait(Duration.ofMinutes(2));
        try (CoordinatorServer coordinator = CoordinatorServer.start(cc);
                ReferenceMoeBlock reference = ReferenceMoeBlock.open(dir)) {
            List<String> addresses = ProcessFaultTest.workers(dir, coordinator.controlAddress(), 3, "sigterm-worker", processes);
            ManagedChannel adminChannel = Clusters.channel(coordinator.adminAddress());
            try (RouterServer router = RouterServer.start(RouterConfig.defaults(dir, ExpertPlacement.none())
                    .withControlPlane(coordinator.controlPlane()))) {
                ModelConfig cfg = router.model();
                LocalCluster.awaitPlacement(router, cfg, Duration.ofSeconds(120));
                assertThat(router.placement().workers()).containsExactlyInAnyOrderElementsOf(addresses);
                String victim = addresses.getFirst();
                assertThat(router.placement().heldBy(router.placement().indexOf(victim))).isNotEmpty();
                var admin = AdminGrpc.newBlockingStub(adminChannel);
                try (var traffic = new CoordinatorClusterTest.Traffic(router.address(), cfg, reference)) {
                    CoordinatorClusterTest.await("traffic", Duration.ofSeconds(60), () -> traffic.ok.get() > 5);
                    Process worker = processes.getFirst();
                    worker.destroy(); // SIGTERM
                    CoordinatorClusterTest.await("the worker reports DRAINED", Duration.ofSeconds(120), () -> admin
                            .withDeadlineAfter(15, TimeUnit.SECONDS).listWorkers(ListWorkersRequest.getDefaultInstance())
                            .getWorkersList().stream().anyMatch(w -> w.getAddress().equals(victim) && w.getState().equals("DRAINED")));
                    assertThat(worker.waitFor(120, TimeUnit.SECONDS)).as("the worker exits after its drain").isTrue();
                    assertThat(worker.exitValue()).isZero();
                    ExpertPlacement after = router.placement();
                    assertThat(!after.workers().contains(victim) || after.heldBy(after.indexOf(victim)).isEmpty())
                            .as("nothing placed on the stopped worker in %s", after.toJson()).isTrue();
                    assertThat(after.minReplicas(cfg, Set.of(victim))).as("every expert has a copy on the others").isEqualTo(1);
                    int before = traffic.ok.get();
                    CoordinatorClusterTest.await("traffic after the worker stopped", Duration.ofSeconds(60),
                            () -> traffic.ok.get() > before + 5);
                    traffic.close();
                    assertThat(traffic.failed.get()).as("failed requests: %s", traffic.errors).isZero();
                }
                String log = Files.readString(logs.resolve("sigterm-worker-0.log"));
                assertThat(log).contains("got SIGTERM", "asked the coordinators to drain it", "experts still placed here",
                        "is drained");
            } finally {
                adminChannel.shutdownNow();
            }
        } finally {
            for (Process p : processes) {
                p.destroyForcibly();
                p.waitFor(10, TimeUnit.SECONDS);
            }
        }
    }

    @Test
    void sigtermedRouterProcessFinishesItsStreamRefusesNewCallsAndExitsZero() throws Exception {
        GatedBackend gated = new GatedBackend();
        ModelConfig cfg = ModelConfig.load(dir);
        int tokens = 24;
        Path logs = ProcessFaultTest.logs();
        Process router = null;
        try (ExpertWorker worker = ExpertWorker.start(WorkerConfig.defaults("gated", dir, ExpertAssignment.parse("all", cfg)), gated)) {
            int port = LocalCluster.freePort();
            String address = "127.0.0.1:" + port;
            // the stream waits for the gate: a long expert deadline, so it neither fails over nor times out
            router = ProcessFaultTest.moe(logs.resolve("sigterm-router.log"), "router", "--model", dir.toString(),
                    "--workers", worker.address(), "--port", String.valueOf(port), "--metrics-port", "0",
                    "--http-port", "0", "--expert-timeout-ms", "300000", "--shutdown-grace-s", "120");
            CoordinatorClusterTest.await("the router process is ready", Duration.ofSeconds(120), () -> {
                try {
                    return LifecycleTest.ready(address);
                } catch (RuntimeException notYet) {
                    return false;
                }
            });
            ManagedChannel channel = Clusters.channel(address);
            try {
                gated.arm();
                int[] prompt = {3, 11, 29};
                CompletableFuture<GenerateClusterTest.Generated> stream = CompletableFuture.supplyAsync(() ->
                        GenerateClusterTest.collect(Clusters.stub(channel).generate(LifecycleTest.longGeneration(prompt, tokens))));
                assertThat(gated.awaitEntered()).as("the stream reached the worker").isTrue();
                router.destroy(); // SIGTERM
                CoordinatorClusterTest.await("router not ready", Duration.ofSeconds(30),
                        () -> LifecycleTest.health(address, GrpcEndpoint.READINESS) == ServingStatus.NOT_SERVING);
                assertThat(LifecycleTest.health(address, GrpcEndpoint.LIVENESS)).isEqualTo(ServingStatus.SERVING);
                assertThatThrownBy(() -> Clusters.stub(channel).moeForward(
                        Clusters.request(0, Clusters.hidden(cfg, 2, 1, DType.F32), DType.F32)))
                        .isInstanceOfSatisfying(StatusRuntimeException.class, e -> {
                            assertThat(e.getStatus().getCode()).isEqualTo(Status.Code.UNAVAILABLE);
                            assertThat(e.getStatus().getDescription()).contains("router is shutting down");
                        });
                assertThat(router.isAlive()).as("the router waits for its stream").isTrue();
                gated.release();
                GenerateClusterTest.Generated g = stream.get(120, TimeUnit.SECONDS);
                assertThat(g.ids()).hasSize(tokens);
                assertThat(g.last().getFinishReason()).isEqualTo(FinishReason.FINISH_REASON_LENGTH);
                assertThat(router.waitFor(60, TimeUnit.SECONDS)).as("the router exits after its stream").isTrue();
                assertThat(router.exitValue()).isZero();
            } finally {
                gated.release();
                channel.shutdownNow();
            }
            assertThat(Files.readString(logs.resolve("sigterm-router.log")))
                    .contains("router got SIGTERM", "router stopping: every call in flight finished");
        } finally {
            if (router != null) {
                router.destroyForcibly();
                router.waitFor(10, TimeUnit.SECONDS);
            }
        }
    }
}
