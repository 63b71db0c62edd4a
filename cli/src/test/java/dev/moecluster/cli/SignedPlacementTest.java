package dev.moecluster.cli;

import static dev.moecluster.cli.CoordinatorClusterTest.await;
import static org.assertj.core.api.Assertions.assertThat;

import com.hazelcast.core.HazelcastInstance;
import com.hazelcast.map.IMap;
import dev.moecluster.control.Assignment;
import dev.moecluster.control.ControlMaps;
import dev.moecluster.control.ControlPlaneConfig;
import dev.moecluster.control.RecordSigning;
import dev.moecluster.control.WorkerRecord;
import dev.moecluster.control.WorkerState;
import dev.moecluster.coordinator.CoordinatorConfig;
import dev.moecluster.coordinator.CoordinatorServer;
import dev.moecluster.core.model.Architecture;
import dev.moecluster.core.model.ModelConfig;
import dev.moecluster.core.placement.ExpertAssignment;
import dev.moecluster.core.placement.ExpertPlacement;
import dev.moecluster.proto.AdminGrpc;
import dev.moecluster.proto.DrainRequest;
import dev.moecluster.router.RouterConfig;
import dev.moecluster.router.RouterServer;
import dev.moecluster.worker.ExpertWorker;
import dev.moecluster.worker.WorkerConfig;
import io.grpc.ManagedChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.KeyPair;
import java.security.KeyPairGenerator;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Base64;
import java.util.List;
import java.util.Map;
import java.util.UUID;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Records forged straight into the state store (what a rogue Hazelcast client could do before the
 * coordinators stopped admitting clients, and what a rogue member still could): routers and workers
 * ignore them, the leader restores its own and goes on publishing (signed) epochs that routers accept.
 * The coordinators' Control API passes the records on as written, so the signature is what protects them.
 */
class SignedPlacementTest {
    private final Path dir = Clusters.tinyModel(Architecture.MIXTRAL);

    @TempDir
    Path keys;

    @Test
    void forgedAndReplayedPlacementsAreIgnoredAndTheLeaderCarriesOn() throws Exception {
        KeyPair pair = KeyPairGenerator.getInstance("Ed25519").generateKeyPair();
        RecordSigning signing = RecordSigning.signingKey(pem("signing.pem", "PRIVATE KEY", pair.getPrivate().getEncoded()));
        RecordSigning verifying = RecordSigning.publicKey(pem("public.pem", "PUBLIC KEY", pair.getPublic().getEncoded()));
        String name = "moe-signed-" + UUID.randomUUID();
        CoordinatorConfig cc = CoordinatorConfig.local(name, LocalCluster.freePort(), dir, 2, 1).withSigningKey(signing)
                .withMetricsPort(0);
        List<ExpertWorker> workers = new ArrayList<>();
        try (CoordinatorServer coordinator = CoordinatorServer.start(cc)) {
            ControlPlaneConfig cp = coordinator.controlPlane().withPlacementKey(verifying);
            for (int i = 0; i < 2; i++) {
                workers.add(ExpertWorker.start(WorkerConfig.defaults("worker-" + i, dir, new ExpertAssignment(Map.of()))
                        .withControlPlane(cp, WorkerConfig.DEFAULT_MEMORY_BYTES).withMetrics(0, true)));
            }
            try (RouterServer router = RouterServer.start(RouterConfig.defaults(dir, ExpertPlacement.none())
                    .withControlPlane(cp).withMetricsPort(0))) {
                ModelConfig cfg = router.model();
                // workers loaded signed assignments and the router took the signed epoch 1
                ExpertPlacement first = LocalCluster.awaitPlacement(router, cfg, Duration.ofSeconds(60));
                assertThat(first.epoch()).isEqualTo(1);
                IMap<String, String> placement = coordinator.hazelcast().getMap(ControlMaps.PLACEMENT);
                await("rollout done", Duration.ofSeconds(30), () -> placement.get(ControlMaps.PENDING) == null);
                String signedFirst = placement.get(ControlMaps.CURRENT);
                assertThat(RecordSigning.signatureIn(signedFirst)).isNotNull();

                HazelcastInstance rogue = coordinator.hazelcast(); // writes into the store, past every check of the Control API
                IMap<String, String> rogueWorkers = rogue.getMap(ControlMaps.WORKERS);
                rogueWorkers.set("6.6.6.6:50061", new WorkerRecord("evil", "6.6.6.6:50061", "cpu", 1L << 40, WorkerState.ACTIVE,
                        Map.of(), 0, System.currentTimeMillis()).toJson());
                ExpertPlacement evil = ExpertPlacement.roundRobin(List.of("6.6.6.6:50061"), cfg, 1);
                String forged = new ExpertPlacement(Long.MAX_VALUE, evil.workers(), evil.layers()).toJson();
                rogue.<String, String>getMap(ControlMaps.PLACEMENT).set(ControlMaps.CURRENT, forged);

                await("the leader restores its placement", Duration.ofSeconds(30),
                        () -> signedFirst.equals(placement.get(ControlMaps.CURRENT)));
                await("the router counted the forged record", Duration.ofSeconds(30),
                        () -> rejected(router, "absurd_epoch") > 0);
                assertThat(router.placement()).isEqualTo(first);
                assertThat(Exposition.scrape(coordinator.metricsPort())
                        .sum("moe_coordinator_records_rejected_total", m -> m.is("kind", "placement"))).isPositive();

                // a forged next epoch (no signature, then another record's signature) is ignored too
                String unsigned = new ExpertPlacement(2, evil.workers(), evil.layers()).toJson();
                rogue.<String, String>getMap(ControlMaps.PLACEMENT).set(ControlMaps.CURRENT, unsigned);
                await("the router refused the unsigned epoch 2", Duration.ofSeconds(30), () -> rejected(router, "unsigned") > 0);
                await("the leader restores its placement again", Duration.ofSeconds(30),
                        () -> signedFirst.equals(placement.get(ControlMaps.CURRENT)));
                assertThat(router.placement().epoch()).isEqualTo(1);

                // workers ignore assignments the leader did not sign: an absurd epoch, then a plausible unsigned one
                ExpertWorker kept = workers.get(1);
                int held = kept.expertCount();
                IMap<String, String> rogueAssignments = rogue.getMap(ControlMaps.ASSIGNMENTS);
                rogueAssignments.set(kept.address(), new Assignment(Long.MAX_VALUE, Map.of()).toJson());
                await("the worker refused the absurd assignment", Duration.ofSeconds(30), () -> rejectedAssignments(kept) > 0);
                rogueAssignments.set(kept.address(), new Assignment(3, Map.of()).toJson());
                double before = rejectedAssignments(kept);
                await("the worker refused the unsigned assignment", Duration.ofSeconds(30),
                        () -> rejectedAssignments(kept) >= before + 2);
                assertThat(kept.expertCount()).isEqualTo(held);

                // the leader was not broken: a drain publishes a properly signed epoch 2, which the router takes
                ManagedChannel admin = Clusters.channel(coordinator.adminAddress());
                try {
                    AdminGrpc.newBlockingStub(admin).withDeadlineAfter(15, TimeUnit.SECONDS)
                            .drain(DrainRequest.newBuilder().setWorker("worker-0").build());
                } finally {
                    admin.shutdownNow();
                }
                String drained = workers.getFirst().address();
                await("the router routes with the signed epoch 2", Duration.ofSeconds(60), () -> router.placement().epoch() == 2);
                ExpertPlacement second = router.placement();
                assertThat(second.workers()).doesNotContain("6.6.6.6:50061");
                assertThat(second.minReplicas(cfg, java.util.Set.of(drained))).isEqualTo(1);

                // the old signed epoch 1, replayed, is stale: the router stays on 2 and the leader restores 2
                rogue.<String, String>getMap(ControlMaps.PLACEMENT).set(ControlMaps.CURRENT, signedFirst);
                await("the router counted the replay", Duration.ofSeconds(30), () -> rejected(router, "stale") > 0);
                await("the leader restores epoch 2", Duration.ofSeconds(30),
                        () -> ExpertPlacement.fromJson(placement.get(ControlMaps.CURRENT)).epoch() == 2);
                assertThat(router.placement()).isEqualTo(second);
            }
        } finally {
            workers.forEach(ExpertWorker::close);
        }
    }

    /** The attack on a cluster without keys: before, every router followed it and the leader's epoch overflowed. */
    @Test
    void withoutKeysAForgedMaxEpochIsIgnoredAndTheLeaderDoesNotOverflow() throws Exception {
        CoordinatorConfig cc = CoordinatorConfig.local("moe-unsigned-" + UUID.randomUUID(), LocalCluster.freePort(), dir, 2, 1);
        List<ExpertWorker> workers = new ArrayList<>();
        try (CoordinatorServer coordinator = CoordinatorServer.start(cc)) {
            for (int i = 0; i < 2; i++) {
                workers.add(ExpertWorker.start(WorkerConfig.defaults("worker-" + i, dir, new ExpertAssignment(Map.of()))
                        .withControlPlane(coordinator.controlPlane(), WorkerConfig.DEFAULT_MEMORY_BYTES)));
            }
            try (RouterServer router = RouterServer.start(RouterConfig.defaults(dir, ExpertPlacement.none())
                    .withControlPlane(coordinator.controlPlane()).withMetricsPort(0))) {
                ModelConfig cfg = router.model();
                ExpertPlacement first = LocalCluster.awaitPlacement(router, cfg, Duration.ofSeconds(60));
                IMap<String, String> placement = coordinator.hazelcast().getMap(ControlMaps.PLACEMENT);
                await("rollout done", Duration.ofSeconds(30), () -> placement.get(ControlMaps.PENDING) == null);
                String published = placement.get(ControlMaps.CURRENT);

                HazelcastInstance rogue = coordinator.hazelcast();
                rogue.<String, String>getMap(ControlMaps.WORKERS).set("6.6.6.6:50061", new WorkerRecord("evil", "6.6.6.6:50061",
                        "cpu", 1L << 40, WorkerState.ACTIVE, Map.of(), 0, System.currentTimeMillis()).toJson());
                ExpertPlacement evil = ExpertPlacement.roundRobin(List.of("6.6.6.6:50061"), cfg, 1);
                rogue.<String, String>getMap(ControlMaps.PLACEMENT).set(ControlMaps.CURRENT,
                        new ExpertPlacement(Long.MAX_VALUE, evil.workers(), evil.layers()).toJson());
                await("the leader restores its placement", Duration.ofSeconds(30),
                        () -> published.equals(placement.get(ControlMaps.CURRENT)));
                await("the router counted the forged record", Duration.ofSeconds(30), () -> rejected(router, "absurd_epoch") > 0);
                assertThat(router.placement()).isEqualTo(first);

                ManagedChannel admin = Clusters.channel(coordinator.adminAddress());
                try {
                    AdminGrpc.newBlockingStub(admin).withDeadlineAfter(15, TimeUnit.SECONDS)
                            .drain(DrainRequest.newBuilder().setWorker("worker-0").build());
                } finally {
                    admin.shutdownNow();
                }
                await("the next epoch, 2, not an overflow", Duration.ofSeconds(60), () -> router.placement().epoch() == 2);
                assertThat(router.placement().workers()).doesNotContain("6.6.6.6:50061");
            }
        } finally {
            workers.forEach(ExpertWorker::close);
        }
    }

    private static double rejected(RouterServer router, String reason) {
        try {
            return Exposition.scrape(router.metricsPort()).sum("moe_router_placements_rejected_total", m -> m.is("reason", reason));
        } catch (Exception e) {
            throw new IllegalStateException(e);
        }
    }

    private static double rejectedAssignments(ExpertWorker worker) {
        try {
            return Exposition.scrape(worker.metricsPort()).sum("moe_worker_assignments_rejected_total", m -> true);
        } catch (Exception e) {
            throw new IllegalStateException(e);
        }
    }

    private Path pem(String file, String label, byte[] der) throws Exception {
        return Files.writeString(keys.resolve(file), "-----BEGIN " + label + "-----\n"
                + Base64.getMimeEncoder().encodeToString(der) + "\n-----END " + label + "-----\n");
    }
}
