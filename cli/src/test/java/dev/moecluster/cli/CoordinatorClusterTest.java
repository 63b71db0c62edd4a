package dev.moecluster.cli;

import static org.assertj.core.api.Assertions.assertThat;

import dev.moecluster.control.ControlMaps;
import dev.moecluster.control.ControlPlaneConfig;
import dev.moecluster.control.WorkerRecord;
import dev.moecluster.control.WorkerState;
import dev.moecluster.coordinator.CoordinatorConfig;
import dev.moecluster.coordinator.CoordinatorServer;
import dev.moecluster.core.model.Architecture;
import dev.moecluster.core.model.ModelConfig;
import dev.moecluster.core.moe.ReferenceMoeBlock;
import dev.moecluster.core.placement.ExpertAssignment;
import dev.moecluster.core.placement.ExpertPlacement;
import dev.moecluster.core.tensor.DType;
import dev.moecluster.core.tensor.FloatMatrix;
import dev.moecluster.proto.AdminGrpc;
import dev.moecluster.proto.AdminStatusRequest;
import dev.moecluster.proto.ClusterStatus;
import dev.moecluster.proto.DrainRequest;
import dev.moecluster.proto.ListWorkersRequest;
import dev.moecluster.proto.RebalanceRequest;
import dev.moecluster.router.RouterConfig;
import dev.moecluster.router.RouterServer;
import dev.moecluster.worker.ExpertWorker;
import dev.moecluster.worker.WorkerConfig;
import io.grpc.ManagedChannel;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.UUID;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.BooleanSupplier;
import org.junit.jupiter.api.Test;

/**
 * The control plane with real Hazelcast members: placement comes from the coordinator, dead and
 * drained workers lose nothing under steady traffic, new workers receive experts, the leader can
 * die, and routers keep serving without any coordinator.
 */
class CoordinatorClusterTest {
    private final Path dir = Clusters.tinyModel(Architecture.MIXTRAL);

    /** MoeForward calls in a loop until stopped, counting failures and checking results. */
    static final class Traffic implements AutoCloseable {
        final AtomicInteger ok = new AtomicInteger();
        final AtomicInteger failed = new AtomicInteger();
        final List<String> errors = new java.util.concurrent.CopyOnWriteArrayList<>();
        private final AtomicBoolean running = new AtomicBoolean(true);
        private final Thread thread;
        private final ManagedChannel channel;

        Traffic(String router, ModelConfig cfg, ReferenceMoeBlock reference) {
            channel = Clusters.channel(router);
            thread = Thread.ofPlatform().start(() -> {
                long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(120);
                for (int i = 0; running.get() && System.nanoTime() < deadline; i++) {
                    int layer = i % 2;
                    FloatMatrix x = Clusters.hidden(cfg, 8, 1000 + i, DType.F32);
                    try {
                        FloatMatrix y = Clusters.output(Clusters.stub(channel).moeForward(Clusters.request(layer, x, DType.F32)));
                        if (Clusters.relativeError(y, reference.forward(layer, x).output()) < 1e-5) {
                            ok.incrementAndGet();
                        } else {
                            failed.incrementAndGet();
                            errors.add("wrong result");
                        }
                    } catch (RuntimeException e) {
                        failed.incrementAndGet();
                        errors.add(e.toString());
                    }
                }
            });
        }

        @Override
        public void close() throws InterruptedException {
            running.set(false);
            thread.join(30_000);
            channel.shutdownNow();
        }
    }

    private static double balancedness(CoordinatorServer coordinator) {
        try {
            return Exposition.scrape(coordinator.metricsPort()).sum("moe_coordinator_balancedness", m -> true);
        } catch (java.io.IOException e) {
            throw new java.io.UncheckedIOException(e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException(e);
        }
    }

    static void await(String what, Duration timeout, BooleanSupplier condition) throws InterruptedException {
        long deadline = System.nanoTime() + timeout.toNanos();
        while (!condition.getAsBoolean()) {
            if (System.nanoTime() > deadline) {
                throw new AssertionError("timed out waiting for " + what);
            }
            Thread.sleep(50);
        }
    }

    /** True when every expert has {@code replicas} copies on workers other than {@code excluded}. */
    static boolean restored(ExpertPlacement p, ModelConfig cfg, int replicas, String excluded) {
        return p.minReplicas(cfg, Set.of(excluded)) >= replicas;
    }

    private static AdminGrpc.AdminBlockingStub admin(ManagedChannel ch) {
        return AdminGrpc.newBlockingStub(ch).withDeadlineAfter(15, TimeUnit.SECONDS);
    }

    @Test
    void placementComesFromTheCoordinatorAndAdminReportsIt() throws Exception {
        try (LocalCluster cluster = LocalCluster.start(LocalCluster.Options.of(dir, 3, 2).withCoordinator(true));
                ReferenceMoeBlock reference = ReferenceMoeBlock.open(dir)) {
            ModelConfig cfg = cluster.model();
            assertThat(cluster.placement().epoch()).isEqualTo(1);
            assertThat(restored(cluster.placement(), cfg, 2, "none")).isTrue();
            FloatMatrix x = Clusters.hidden(cfg, 16, 5, DType.F32);
            ManagedChannel ch = Clusters.channel(cluster.router().address());
            ManagedChannel adm = Clusters.channel(cluster.coordinator().adminAddress());
            try {
                FloatMatrix y = Clusters.output(Clusters.stub(ch).moeForward(Clusters.request(1, x, DType.F32)));
                assertThat(Clusters.relativeError(y, reference.forward(1, x).output())).isLessThan(1e-5);
                await("rollout to finish", Duration.ofSeconds(30),
                        () -> admin(adm).status(AdminStatusRequest.getDefaultInstance()).getRollout().equals("idle"));
                ClusterStatus s = admin(adm).status(AdminStatusRequest.getDefaultInstance());
                assertThat(s.getPlacementEpoch()).isEqualTo(1);
                assertThat(s.getMinReplicas()).isEqualTo(2);
                assertThat(s.getWorkersByStateMap()).isEqualTo(Map.of("ACTIVE", 3));
                assertThat(s.getMembersList()).hasSize(1).contains(s.getLeader());
                var workers = admin(adm).listWorkers(ListWorkersRequest.getDefaultInstance()).getWorkersList();
                assertThat(workers).hasSize(3);
                int copies = workers.stream().mapToInt(w -> w.getExperts()).sum();
                assertThat(copies).isEqualTo(2 * cfg.numExperts() * cfg.moeLayerList().size());
                long perExpert = dev.moecluster.coordinator.ModelShape.of(cfg).bytesPerExpert();
                assertThat(workers).allSatisfy(w -> {
                    assertThat(w.getMemoryUsedBytes()).isEqualTo(w.getExperts() * perExpert);
                    assertThat(w.getMemoryUsedBytes()).isPositive().isLessThan(w.getMemoryBytes());
                });
                // the CLI's tables: memory used and budget; placement rows name the workers by id
                String target = cluster.coordinator().adminAddress();
                Object[] table = MoeCommandTest.run("admin", "workers", "--target", target);
                assertThat(table[0]).as("stderr: %s", table[2]).isEqualTo(0);
                var first = workers.getFirst();
                assertThat((String) table[1]).contains("memory used / budget", dev.moecluster.coordinator.MemorySize.format(first.getMemoryUsedBytes())
                        + " / " + dev.moecluster.coordinator.MemorySize.format(first.getMemoryBytes()));
                Object[] placement = MoeCommandTest.run("admin", "placement", "--target", target);
                assertThat(placement[0]).as("stderr: %s", placement[2]).isEqualTo(0);
                String shown = (String) placement[1];
                for (var w : workers) {
                    assertThat(shown).containsPattern("(?m)^  " + java.util.regex.Pattern.quote(w.getId()) + " +"
                            + java.util.regex.Pattern.quote(w.getAddress()) + "$");
                }
                assertThat(shown).containsPattern("layer \\d+ +e0:worker-\\d,worker-\\d e1:");
                assertThat(shown).doesNotContainPattern("e\\d+:w\\d");
            } finally {
                ch.shutdownNow();
                adm.shutdownNow();
            }
        }
    }

    @Test
    void killedWorkerLosesNoRequestAndItsReplicasAreRestored() throws Exception {
        try (LocalCluster cluster = LocalCluster.start(LocalCluster.Options.of(dir, 3, 2).withCoordinator(true));
                ReferenceMoeBlock reference = ReferenceMoeBlock.open(dir)) {
            ModelConfig cfg = cluster.model();
            String victim = cluster.workers().get(0).address();
            try (Traffic traffic = new Traffic(cluster.router().address(), cfg, reference)) {
                await("traffic", Duration.ofSeconds(30), () -> traffic.ok.get() > 5);
                cluster.workers().get(0).kill();
                await("replicas restored on the survivors", Duration.ofSeconds(60),
                        () -> restored(cluster.router().placement(), cfg, 2, victim));
                int before = traffic.ok.get();
                await("traffic on the new placement", Duration.ofSeconds(30), () -> traffic.ok.get() > before + 5);
                traffic.close();
                assertThat(traffic.failed.get()).as("failed requests: %s", traffic.errors).isZero();
            }
            var workers = cluster.coordinator().hazelcast().<String, String>getMap(ControlMaps.WORKERS);
            assertThat(WorkerRecord.fromJson(workers.get(victim)).state()).isEqualTo(WorkerState.DEAD);
            assertThat(cluster.router().placement().epoch()).isGreaterThan(1);
        }
    }

    @Test
    void aTakenMemberPortIsReportedWithItsAddressAndTheFlagToChange() throws Exception {
        try (java.net.ServerSocket taken = new java.net.ServerSocket(0, 1, java.net.InetAddress.getByName("127.0.0.1"))) {
            int port = taken.getLocalPort();
            CoordinatorConfig cc = CoordinatorConfig.local("moe-taken-" + UUID.randomUUID(), port, dir, 1, 1);
            org.assertj.core.api.Assertions.assertThatThrownBy(() -> CoordinatorServer.start(cc).close())
                    .isInstanceOf(java.io.IOException.class)
                    .hasMessage("cannot serve the Hazelcast member port on 127.0.0.1:" + port
                            + ": Address already in use (another process has the port? choose another --port)");
        }
    }

    @Test
    void drainedWorkerHandsOverWithoutFailuresAndANewWorkerTakesLoad() throws Exception {
        try (LocalCluster cluster = LocalCluster.start(LocalCluster.Options.of(dir, 2, 1).withCoordinator(true));
                ReferenceMoeBlock reference = ReferenceMoeBlock.open(dir)) {
            ModelConfig cfg = cluster.model();
            ManagedChannel adm = Clusters.channel(cluster.coordinator().adminAddress());
            ExpertWorker joined = null;
            try (Traffic traffic = new Traffic(cluster.router().address(), cfg, reference)) {
                await("traffic", Duration.ofSeconds(30), () -> traffic.ok.get() > 5);
                // a third worker joins and, on a rebalance, receives experts
                ControlPlaneConfig cp = cluster.coordinator().controlPlane();
                joined = ExpertWorker.start(WorkerConfig.defaults("worker-new", dir, new ExpertAssignment(Map.of()))
                        .withControlPlane(cp, WorkerConfig.DEFAULT_MEMORY_BYTES));
                String newcomer = joined.address();
                await("the new worker registers", Duration.ofSeconds(30), () -> admin(adm)
                        .listWorkers(ListWorkersRequest.getDefaultInstance()).getWorkersCount() == 3);
                admin(adm).rebalance(RebalanceRequest.getDefaultInstance());
                ExpertWorker newWorker = joined;
                await("the new worker holds experts", Duration.ofSeconds(60),
                        () -> newWorker.expertCount() > 0 && cluster.router().placement().workers().contains(newcomer));
                // drain worker-0: everything moves off it, it reports DRAINED
                String drained = cluster.workers().get(0).address();
                admin(adm).drain(DrainRequest.newBuilder().setWorker("worker-0").build());
                await("worker-0 drained", Duration.ofSeconds(60), () -> admin(adm).listWorkers(ListWorkersRequest.getDefaultInstance())
                        .getWorkersList().stream().anyMatch(w -> w.getAddress().equals(drained) && w.getState().equals("DRAINED")));
                assertThat(cluster.workers().get(0).expertCount()).isZero();
                assertThat(restored(cluster.router().placement(), cfg, 1, drained)).isTrue();
                int before = traffic.ok.get();
                await("traffic after the drain", Duration.ofSeconds(30), () -> traffic.ok.get() > before + 5);
                traffic.close();
                assertThat(traffic.failed.get()).as("failed requests: %s", traffic.errors).isZero();
            } finally {
                adm.shutdownNow();
                if (joined != null) {
                    joined.close();
                }
            }
        }
    }

    @Test
    void aWorkerThatJoinsUnderTrafficTakesExpertsAtTheNextScheduledCheckWithoutARequest() throws Exception {
        String name = "moe-scale-up-" + UUID.randomUUID();
        // a scheduled check every second; the placement's balancedness cannot see a worker outside it
        CoordinatorConfig cc = CoordinatorConfig.local(name, LocalCluster.freePort(), dir, 2, 1)
                .withRebalanceInterval(Duration.ofSeconds(1)).withMetricsPort(0);
        List<ExpertWorker> workers = new ArrayList<>();
        try (CoordinatorServer coordinator = CoordinatorServer.start(cc);
                ReferenceMoeBlock reference = ReferenceMoeBlock.open(dir)) {
            for (int i = 0; i < 2; i++) {
                workers.add(ExpertWorker.start(WorkerConfig.defaults("worker-" + i, dir, new ExpertAssignment(Map.of()))
                        .withControlPlane(coordinator.controlPlane(), WorkerConfig.DEFAULT_MEMORY_BYTES)));
            }
            try (RouterServer router = RouterServer.start(RouterConfig.defaults(dir, ExpertPlacement.none())
                    .withControlPlane(coordinator.controlPlane()))) {
                ModelConfig cfg = router.model();
                LocalCluster.awaitPlacement(router, cfg, Duration.ofSeconds(60));
                try (Traffic traffic = new Traffic(router.address(), cfg, reference)) {
                    await("traffic", Duration.ofSeconds(30), () -> traffic.ok.get() > 5);
                    ExpertWorker joined = ExpertWorker.start(WorkerConfig.defaults("worker-2", dir, new ExpertAssignment(Map.of()))
                            .withControlPlane(coordinator.controlPlane(), WorkerConfig.DEFAULT_MEMORY_BYTES));
                    workers.add(joined);
                    String newcomer = joined.address();
                    // nobody asks for a rebalance: the leader's own check finds the idle worker
                    await("the joined worker holds experts and routers route to it", Duration.ofSeconds(60),
                            () -> joined.expertCount() > 0 && router.placement().workers().contains(newcomer)
                                    && !router.placement().heldBy(router.placement().indexOf(newcomer)).isEmpty());
                    assertThat(Exposition.scrape(coordinator.metricsPort())
                            .sum("moe_coordinator_rollouts_total", m -> m.is("kind", "rebalance"))).isPositive();
                    int before = traffic.ok.get();
                    await("traffic after the scale-up", Duration.ofSeconds(30), () -> traffic.ok.get() > before + 5);
                    traffic.close();
                    assertThat(traffic.failed.get()).as("failed requests: %s", traffic.errors).isZero();
                }
            }
        } finally {
            workers.forEach(ExpertWorker::close);
        }
    }

    @Test
    void leaderDeathLeavesPlacementIntactAndAnotherCoordinatorLeads() throws Exception {
        String name = "moe-test-" + UUID.randomUUID();
        List<Integer> ports = List.of(LocalCluster.freePort(), LocalCluster.freePort(), LocalCluster.freePort());
        List<String> members = ports.stream().map(p -> "127.0.0.1:" + p).toList();
        List<CoordinatorServer> coordinators = new ArrayList<>();
        List<ExpertWorker> workers = new ArrayList<>();
        RouterServer router = null;
        try (ReferenceMoeBlock reference = ReferenceMoeBlock.open(dir)) {
            for (int port : ports) {
                coordinators.add(CoordinatorServer.start(CoordinatorConfig.local(name, port, dir, 3, 2).withMembers(members, port)
                        .withMetricsPort(0)));
            }
            await("three members", Duration.ofSeconds(60),
                    () -> coordinators.getFirst().hazelcast().getCluster().getMembers().size() == 3);
            // every coordinator's control address: components move on to the next when the one they use dies
            ControlPlaneConfig cp = ControlPlaneConfig.of(coordinators.stream().map(CoordinatorServer::controlAddress).toList())
                    .withHeartbeatInterval(coordinators.getFirst().controlPlane().heartbeatInterval());
            for (int i = 0; i < 3; i++) {
                workers.add(ExpertWorker.start(WorkerConfig.defaults("worker-" + i, dir, new ExpertAssignment(Map.of()))
                        .withControlPlane(cp, WorkerConfig.DEFAULT_MEMORY_BYTES)));
            }
            router = RouterServer.start(RouterConfig.defaults(dir, ExpertPlacement.none()).withControlPlane(cp));
            ModelConfig cfg = router.model();
            ExpertPlacement first = LocalCluster.awaitPlacement(router, cfg, Duration.ofSeconds(60));
            CoordinatorServer leader = coordinators.stream().filter(CoordinatorServer::isLeader).findFirst().orElseThrow();
            RouterServer r = router;
            try (Traffic traffic = new Traffic(router.address(), cfg, reference)) {
                await("traffic", Duration.ofSeconds(30), () -> traffic.ok.get() > 3);
                // every coordinator exports the balancedness the leader acts on, not only the leader
                CoordinatorServer follower = coordinators.stream().filter(c -> !c.isLeader()).findFirst().orElseThrow();
                await("the follower's balancedness metric follows the leader's", Duration.ofSeconds(30), () -> {
                    double mine = balancedness(follower);
                    double leaders = balancedness(leader);
                    return Math.abs(mine - leaders) < 0.02 && leaders < 1.0;
                });
                // a member killed while partitions still migrate to the newer members can take one with it
                await("partitions migrated", Duration.ofSeconds(60), () -> leader.hazelcast().getPartitionService().isClusterSafe());
                leader.kill();
                coordinators.remove(leader);
                await("a new leader", Duration.ofSeconds(60), () -> coordinators.stream().anyMatch(CoordinatorServer::isLeader));
                // the workers' heartbeats move to a live coordinator; the new leader waits a heartbeat timeout
                // before judging them, so none is declared dead meanwhile
                var registry = coordinators.getFirst().hazelcast().<String, String>getMap(ControlMaps.WORKERS);
                long watchUntil = System.nanoTime() + TimeUnit.SECONDS.toNanos(8);
                while (System.nanoTime() < watchUntil) {
                    for (ExpertWorker w : workers) {
                        assertThat(WorkerRecord.fromJson(registry.get(w.address())).state()).as("worker %s after the leader change", w.address())
                                .isEqualTo(WorkerState.ACTIVE);
                    }
                    Thread.sleep(200);
                }
                String kept = coordinators.getFirst().hazelcast().<String, String>getMap(ControlMaps.PLACEMENT).get(ControlMaps.CURRENT);
                assertThat(ExpertPlacement.fromJson(kept).epoch()).isGreaterThanOrEqualTo(first.epoch());
                // the new leader acts: a worker death is repaired
                String victim = workers.get(1).address();
                workers.get(1).kill();
                await("repair by the new leader", Duration.ofSeconds(60), () -> restored(r.placement(), cfg, 2, victim));
                int before = traffic.ok.get();
                await("traffic after the repair", Duration.ofSeconds(30), () -> traffic.ok.get() > before + 3);
                traffic.close();
                assertThat(traffic.failed.get()).as("failed requests: %s", traffic.errors).isZero();
            }
        } finally {
            if (router != null) {
                router.close();
            }
            workers.forEach(ExpertWorker::close);
            coordinators.forEach(CoordinatorServer::close);
        }
    }

    @Test
    void routerKeepsServingWithNoCoordinator() throws Exception {
        try (LocalCluster cluster = LocalCluster.start(LocalCluster.Options.of(dir, 3, 1).withCoordinator(true));
                ReferenceMoeBlock reference = ReferenceMoeBlock.open(dir)) {
            ModelConfig cfg = cluster.model();
            long epoch = cluster.router().placement().epoch();
            cluster.coordinator().kill();
            ManagedChannel ch = Clusters.channel(cluster.router().address());
            try {
                for (int i = 0; i < 10; i++) {
                    FloatMatrix x = Clusters.hidden(cfg, 8, 300 + i, DType.F32);
                    FloatMatrix y = Clusters.output(Clusters.stub(ch).moeForward(Clusters.request(i % 2, x, DType.F32)));
                    assertThat(Clusters.relativeError(y, reference.forward(i % 2, x).output())).isLessThan(1e-5);
                }
                assertThat(cluster.router().placement().epoch()).isEqualTo(epoch);
                assertThat(Set.copyOf(cluster.router().placement().workers())).hasSize(3);
            } finally {
                ch.shutdownNow();
            }
        }
    }
}
