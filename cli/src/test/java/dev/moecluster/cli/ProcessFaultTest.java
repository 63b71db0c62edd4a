package dev.moecluster.cli;

import static org.assertj.core.api.Assertions.assertThat;

import dev.moecluster.coordinator.CoordinatorConfig;
import dev.moecluster.coordinator.CoordinatorServer;
import dev.moecluster.core.model.Architecture;
import dev.moecluster.core.model.ModelConfig;
import dev.moecluster.core.moe.ReferenceMoeBlock;
import dev.moecluster.core.placement.ExpertPlacement;
import dev.moecluster.router.RouterConfig;
import dev.moecluster.router.RouterServer;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.UUID;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;

/**
 * Workers as real JVM processes, killed with SIGKILL under steady traffic: no request fails, and the
 * coordinator restores every expert's replica count on the survivors.
 */
class ProcessFaultTest {
    private final Path dir = Clusters.tinyModel(Architecture.MIXTRAL);

    private static Process worker(Path model, String cluster, String coordinator, int port, String id, Path log) throws Exception {
        String java = ProcessHandle.current().info().command().orElse("java");
        List<String> cmd = new ArrayList<>(List.of(java, "-Xmx512m", "--add-modules", "jdk.incubator.vector",
                "--enable-native-access=ALL-UNNAMED", "--sun-misc-unsafe-memory-access=allow",
                "-cp", System.getProperty("java.class.path"), "dev.moecluster.cli.Moe", "worker",
                "--model", model.toString(), "--coordinators", coordinator, "--cluster-name", cluster,
                "--port", String.valueOf(port), "--id", id));
        return new ProcessBuilder(cmd).redirectErrorStream(true).redirectOutput(log.toFile()).start();
    }

    @Test
    void sigkilledWorkerProcessLosesNoRequestAndReplicasAreRestored() throws Exception {
        String cluster = "moe-proc-" + UUID.randomUUID();
        int hzPort = LocalCluster.freePort();
        List<Process> processes = new ArrayList<>();
        Path logs = Path.of("target", "process-fault-logs");
        logs.toFile().mkdirs();
        // wait for all three processes to register before the first placement, however slow they start
        CoordinatorConfig cc = CoordinatorConfig.local(cluster, hzPort, dir, 3, 2).withInitialWait(Duration.ofMinutes(2));
        try (CoordinatorServer coordinator = CoordinatorServer.start(cc);
                ReferenceMoeBlock reference = ReferenceMoeBlock.open(dir)) {
            List<String> addresses = new ArrayList<>();
            for (int i = 0; i < 3; i++) {
                int port = LocalCluster.freePort();
                addresses.add("127.0.0.1:" + port);
                processes.add(worker(dir, cluster, "127.0.0.1:" + hzPort, port, "proc-worker-" + i,
                        logs.resolve("worker-" + i + ".log")));
            }
            try (RouterServer router = RouterServer.start(RouterConfig.defaults(dir, ExpertPlacement.none())
                    .withControlPlane(cc.controlPlane()))) {
                ModelConfig cfg = router.model();
                LocalCluster.awaitPlacement(router, cfg, Duration.ofSeconds(120));
                assertThat(router.placement().workers()).containsExactlyInAnyOrderElementsOf(addresses);
                try (var traffic = new CoordinatorClusterTest.Traffic(router.address(), cfg, reference)) {
                    CoordinatorClusterTest.await("traffic", Duration.ofSeconds(60), () -> traffic.ok.get() > 5);
                    Process victim = processes.getFirst();
                    victim.destroyForcibly(); // SIGKILL
                    assertThat(victim.waitFor(30, TimeUnit.SECONDS)).isTrue();
                    String dead = addresses.getFirst();
                    CoordinatorClusterTest.await("replicas restored on the survivors", Duration.ofSeconds(90),
                            () -> CoordinatorClusterTest.restored(router.placement(), cfg, 2, dead));
                    int before = traffic.ok.get();
                    CoordinatorClusterTest.await("traffic on the repaired placement", Duration.ofSeconds(60),
                            () -> traffic.ok.get() > before + 5);
                    traffic.close();
                    assertThat(traffic.failed.get()).as("failed requests: %s", traffic.errors).isZero();
                }
            }
        } finally {
            for (Process p : processes) {
                p.destroyForcibly();
                p.waitFor(10, TimeUnit.SECONDS);
            }
        }
    }

}
