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
 * Workers and coordinators as real JVM processes under steady traffic: a worker killed with SIGKILL,
 * a worker joining, a worker drained, the leading coordinator of three killed with SIGKILL. No
 * request fails, replica counts are restored, another coordinator leads.
 */
class ProcessFaultTest {
    private final Path dir = Clusters.tinyModel(Architecture.MIXTRAL);

    /** Starts {@code moe ARGS…} in a new JVM with this test's classpath, output to {@code log}. */
    static Process moe(Path log, String... args) throws Exception {
        String java = ProcessHandle.current().info().command().orElse("java");
        List<String> cmd = new ArrayList<>(List.of(java, "-Xmx512m", "--add-modules", "jdk.incubator.vector",
                "--enable-native-access=ALL-UNNAMED", "--sun-misc-unsafe-memory-access=allow",
                "-cp", System.getProperty("java.class.path"), "dev.moecluster.cli.Moe"));
        cmd.addAll(List.of(args));
        return new ProcessBuilder(cmd).redirectErrorStream(true).redirectOutput(log.toFile()).start();
    }

    static Process worker(Path model, String coordinators, int port, String id, Path log) throws Exception {
        return moe(log, "worker", "--model", model.toString(), "--coordinators", coordinators,
                "--port", String.valueOf(port), "--id", id, "--metrics-port", "0");
    }

    /** The folder process tests write their processes' logs to. */
    static Path logs() {
        Path logs = Path.of("target", "process-fault-logs");
        logs.toFile().mkdirs();
        return logs;
    }

    /**
     * Starts {@code count} worker processes registering with the coordinator's control API at {@code control}, adds them
     * to {@code processes} (for the caller to kill) and returns their addresses; logs {@code <name>-i.log}.
     */
    static List<String> workers(Path model, String control, int count, String name, List<Process> processes)
            throws Exception {
        List<String> addresses = new ArrayList<>();
        for (int i = 0; i < count; i++) {
            int port = LocalCluster.freePort();
            addresses.add("127.0.0.1:" + port);
            processes.add(worker(model, control, port, name + "-" + i, logs().resolve(name + "-" + i + ".log")));
        }
        return addresses;
    }

    @Test
    void sigkilledWorkerProcessLosesNoRequestAndReplicasAreRestored() throws Exception {
        String cluster = "moe-proc-" + UUID.randomUUID();
        int hzPort = LocalCluster.freePort();
        List<Process> processes = new ArrayList<>();
        Path logs = logs();
        // wait for all three processes to register before the first placement, however slow they start
        CoordinatorConfig cc = CoordinatorConfig.local(cluster, hzPort, dir, 3, 2).withInitialWait(Duration.ofMinutes(2));
        try (CoordinatorServer coordinator = CoordinatorServer.start(cc);
                ReferenceMoeBlock reference = ReferenceMoeBlock.open(dir)) {
            List<String> addresses = workers(dir, coordinator.controlAddress(), 3, "proc-worker", processes);
            try (RouterServer router = RouterServer.start(RouterConfig.defaults(dir, ExpertPlacement.none())
                    .withControlPlane(coordinator.controlPlane()))) {
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
                    // a new worker process joins and, on a rebalance, takes experts; then another is drained
                    int port = LocalCluster.freePort();
                    String newcomer = "127.0.0.1:" + port;
                    processes.add(worker(dir, coordinator.controlAddress(), port, "proc-worker-3", logs.resolve("proc-worker-3.log")));
                    var adminChannel = Clusters.channel(coordinator.adminAddress());
                    try {
                        var admin = dev.moecluster.proto.AdminGrpc.newBlockingStub(adminChannel);
                        CoordinatorClusterTest.await("the new worker registers", Duration.ofSeconds(90), () -> admin
                                .listWorkers(dev.moecluster.proto.ListWorkersRequest.getDefaultInstance()).getWorkersList()
                                .stream().anyMatch(w -> w.getAddress().equals(newcomer) && w.getState().equals("ACTIVE")));
                        admin.rebalance(dev.moecluster.proto.RebalanceRequest.getDefaultInstance());
                        CoordinatorClusterTest.await("the new worker is placed", Duration.ofSeconds(90),
                                () -> router.placement().workers().contains(newcomer)
                                        && !router.placement().heldBy(router.placement().indexOf(newcomer)).isEmpty());
                        String drained = addresses.get(1);
                        admin.drain(dev.moecluster.proto.DrainRequest.newBuilder().setWorker(drained).build());
                        CoordinatorClusterTest.await("the drained worker reports DRAINED", Duration.ofSeconds(90), () -> admin
                                .listWorkers(dev.moecluster.proto.ListWorkersRequest.getDefaultInstance()).getWorkersList()
                                .stream().anyMatch(w -> w.getAddress().equals(drained) && w.getState().equals("DRAINED")));
                        assertThat(router.placement().minReplicas(cfg, java.util.Set.of(dead, drained))).isEqualTo(2);
                    } finally {
                        adminChannel.shutdownNow();
                    }
                    int after = traffic.ok.get();
                    CoordinatorClusterTest.await("traffic after join and drain", Duration.ofSeconds(60),
                            () -> traffic.ok.get() > after + 5);
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


    @Test
    void sigkilledLeaderCoordinatorLeavesPlacementIntactAndAnotherLeads() throws Exception {
        String cluster = "moe-proc-" + UUID.randomUUID();
        List<Integer> hzPorts = List.of(LocalCluster.freePort(), LocalCluster.freePort(), LocalCluster.freePort());
        List<Integer> adminPorts = List.of(LocalCluster.freePort(), LocalCluster.freePort(), LocalCluster.freePort());
        List<Integer> controlPorts = List.of(LocalCluster.freePort(), LocalCluster.freePort(), LocalCluster.freePort());
        String members = String.join(",", hzPorts.stream().map(p -> "127.0.0.1:" + p).toList());
        Path logs = logs();
        List<Process> coordinators = new ArrayList<>();
        List<dev.moecluster.worker.ExpertWorker> workers = new ArrayList<>();
        try (ReferenceMoeBlock reference = ReferenceMoeBlock.open(dir)) {
            for (int i = 0; i < 3; i++) {
                coordinators.add(moe(logs.resolve("coordinator-" + i + ".log"), "coordinator", "--model", dir.toString(),
                        "--cluster-name", cluster, "--port", String.valueOf(hzPorts.get(i)), "--members", members,
                        "--admin-port", String.valueOf(adminPorts.get(i)), "--control-port", String.valueOf(controlPorts.get(i)),
                        "--expected-workers", "3", "--min-replicas", "2",
                        "--heartbeat-timeout-ms", "3000", "--drain-grace-ms", "1000", "--metrics-port", "0"));
            }
            var cp = dev.moecluster.control.ControlPlaneConfig.of(controlPorts.stream().map(p -> "127.0.0.1:" + p).toList())
                    .withHeartbeatInterval(Duration.ofMillis(500));
            for (int i = 0; i < 3; i++) {
                workers.add(dev.moecluster.worker.ExpertWorker.start(dev.moecluster.worker.WorkerConfig
                        .defaults("worker-" + i, dir, new dev.moecluster.core.placement.ExpertAssignment(java.util.Map.of()))
                        .withControlPlane(cp, dev.moecluster.worker.WorkerConfig.DEFAULT_MEMORY_BYTES)));
            }
            try (RouterServer router = RouterServer.start(RouterConfig.defaults(dir, ExpertPlacement.none()).withControlPlane(cp))) {
                ModelConfig cfg = router.model();
                LocalCluster.awaitPlacement(router, cfg, Duration.ofSeconds(120));
                var channels = adminPorts.stream().map(p -> Clusters.channel("127.0.0.1:" + p)).toList();
                // every coordinator process has joined and serves its Admin API
                CoordinatorClusterTest.await("three coordinators answering", Duration.ofSeconds(120), () -> channels.stream()
                        .allMatch(ch -> {
                            try {
                                return dev.moecluster.proto.AdminGrpc.newBlockingStub(ch).withDeadlineAfter(5, TimeUnit.SECONDS)
                                        .status(dev.moecluster.proto.AdminStatusRequest.getDefaultInstance()).getMembersCount() == 3;
                            } catch (RuntimeException notYet) {
                                return false;
                            }
                        }));
                try (var traffic = new CoordinatorClusterTest.Traffic(router.address(), cfg, reference)) {
                    CoordinatorClusterTest.await("traffic", Duration.ofSeconds(60), () -> traffic.ok.get() > 3);
                    var status = dev.moecluster.proto.AdminGrpc.newBlockingStub(channels.getFirst())
                            .status(dev.moecluster.proto.AdminStatusRequest.getDefaultInstance());
                    int leader = hzPorts.indexOf(Integer.parseInt(status.getLeader().substring(status.getLeader().lastIndexOf(':') + 1)));
                    long epoch = status.getPlacementEpoch();
                    coordinators.get(leader).destroyForcibly(); // SIGKILL the leader
                    assertThat(coordinators.get(leader).waitFor(30, TimeUnit.SECONDS)).isTrue();
                    var survivor = dev.moecluster.proto.AdminGrpc.newBlockingStub(channels.get((leader + 1) % 3));
                    CoordinatorClusterTest.await("another coordinator leads", Duration.ofSeconds(60), () -> {
                        try {
                            var s = survivor.withDeadlineAfter(5, TimeUnit.SECONDS).status(dev.moecluster.proto.AdminStatusRequest.getDefaultInstance());
                            return s.getMembersCount() == 2 && !s.getLeader().endsWith(":" + hzPorts.get(leader));
                        } catch (RuntimeException e) {
                            return false;
                        }
                    });
                    var after = survivor.status(dev.moecluster.proto.AdminStatusRequest.getDefaultInstance());
                    assertThat(after.getPlacementEpoch()).isGreaterThanOrEqualTo(epoch);
                    assertThat(after.getMinReplicas()).isEqualTo(2);
                    // the new leader acts: a worker death is repaired
                    String victim = workers.get(2).address();
                    workers.get(2).kill();
                    CoordinatorClusterTest.await("repair by the new leader", Duration.ofSeconds(90),
                            () -> CoordinatorClusterTest.restored(router.placement(), cfg, 2, victim));
                    int before = traffic.ok.get();
                    CoordinatorClusterTest.await("traffic after the repair", Duration.ofSeconds(60), () -> traffic.ok.get() > before + 3);
                    traffic.close();
                    assertThat(traffic.failed.get()).as("failed requests: %s", traffic.errors).isZero();
                } finally {
                    channels.forEach(io.grpc.ManagedChannel::shutdownNow);
                }
            }
        } finally {
            workers.forEach(dev.moecluster.worker.ExpertWorker::close);
            for (Process p : coordinators) {
                p.destroyForcibly();
                p.waitFor(10, TimeUnit.SECONDS);
            }
        }
    }
}
