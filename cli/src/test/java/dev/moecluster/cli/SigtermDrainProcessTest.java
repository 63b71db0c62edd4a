package dev.moecluster.cli;

import static org.assertj.core.api.Assertions.assertThat;

import dev.moecluster.coordinator.CoordinatorConfig;
import dev.moecluster.coordinator.CoordinatorServer;
import dev.moecluster.core.model.Architecture;
import dev.moecluster.core.model.ModelConfig;
import dev.moecluster.core.moe.ReferenceMoeBlock;
import dev.moecluster.core.placement.ExpertPlacement;
import dev.moecluster.proto.AdminGrpc;
import dev.moecluster.proto.ListWorkersRequest;
import dev.moecluster.router.RouterConfig;
import dev.moecluster.router.RouterServer;
import io.grpc.ManagedChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.UUID;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;

/**
 * SIGTERM on a worker process under steady MoeForward traffic: with one copy of each expert, the
 * coordinator must move the worker's experts before it may stop; the worker waits for DRAINED, then
 * exits 0, and no request fails.
 */
class SigtermDrainProcessTest {
    private final Path dir = Clusters.tinyModel(Architecture.MIXTRAL);

    @Test
    void sigtermedWorkerProcessIsDrainedThenExitsZeroWithoutAFailedRequest() throws Exception {
        String cluster = "moe-sigterm-" + UUID.randomUUID();
        int hzPort = LocalCluster.freePort();
        List<Process> processes = new ArrayList<>();
        Path logs = Path.of("target", "process-fault-logs");
        logs.toFile().mkdirs();
        // one replica: every expert of the drained worker has to move; wait for all three before placing
        CoordinatorConfig cc = CoordinatorConfig.local(cluster, hzPort, dir, 3, 1).withInitialWait(Duration.ofMinutes(2));
        try (CoordinatorServer coordinator = CoordinatorServer.start(cc);
                ReferenceMoeBlock reference = ReferenceMoeBlock.open(dir)) {
            List<String> addresses = new ArrayList<>();
            for (int i = 0; i < 3; i++) {
                int port = LocalCluster.freePort();
                addresses.add("127.0.0.1:" + port);
                processes.add(ProcessFaultTest.worker(dir, cluster, "127.0.0.1:" + hzPort, port, "sigterm-worker-" + i,
                        logs.resolve("sigterm-worker-" + i + ".log")));
            }
            ManagedChannel adminChannel = Clusters.channel(coordinator.adminAddress());
            try (RouterServer router = RouterServer.start(RouterConfig.defaults(dir, ExpertPlacement.none())
                    .withControlPlane(cc.controlPlane()))) {
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
}
