package dev.moecluster.cli;

import static dev.moecluster.cli.CoordinatorClusterTest.await;
import static org.assertj.core.api.Assertions.assertThat;

import dev.moecluster.control.ControlMaps;
import dev.moecluster.control.WorkerRecord;
import dev.moecluster.control.WorkerState;
import dev.moecluster.core.model.Architecture;
import dev.moecluster.core.model.ModelConfig;
import dev.moecluster.core.moe.ReferenceMoeBlock;
import dev.moecluster.core.placement.ExpertPlacement;
import dev.moecluster.worker.CpuBackend;
import java.nio.file.Path;
import java.time.Duration;
import org.junit.jupiter.api.Test;

/**
 * A worker whose data plane hangs while its heartbeats go on (a gray failure the coordinators cannot
 * see by themselves): the router resends its rows to the replicas and reports its failed batches; the
 * leader marks it SUSPECT and moves its experts, though it never missed a heartbeat.
 */
class GrayFailureTest {
    private final Path dir = Clusters.tinyModel(Architecture.MIXTRAL);

    @Test
    void aWorkerThatHeartbeatsButAnswersNoBatchIsSuspectAndLosesItsExperts() throws Exception {
        GatedBackend hung = new GatedBackend();
        var options = LocalCluster.Options.of(dir, 3, 2).withCoordinator(true)
                .withBackends(i -> i == 0 ? hung : new CpuBackend())
                .withRouterSettings(rc -> rc.withExpertTimeout(Duration.ofSeconds(2)));
        try (LocalCluster cluster = LocalCluster.start(options);
                ReferenceMoeBlock reference = ReferenceMoeBlock.open(dir)) {
            ModelConfig cfg = cluster.model();
            String gray = cluster.workers().get(0).address();
            var workers = cluster.coordinator().hazelcast().<String, String>getMap(ControlMaps.WORKERS);
            try (var traffic = new CoordinatorClusterTest.Traffic(cluster.router().address(), cfg, reference)) {
                await("traffic", Duration.ofSeconds(30), () -> traffic.ok.get() > 5);
                hung.arm(); // its batches hang from now on; its control client goes on heartbeating
                await("the leader marks the worker SUSPECT", Duration.ofSeconds(60),
                        () -> WorkerRecord.fromJson(workers.get(gray)).state() == WorkerState.SUSPECT);
                // the router learnt it from its own batches: ones that timed out and were resent, or hedge copies
                // it sent there when a healthy replica was slow, which never came back
                assertThat(cluster.router().stats().failovers() + cluster.router().stats().hedged())
                        .as("its batches were resent to replicas or duplicated there (failed over, or hedged)").isPositive();
                await("its experts placed elsewhere and the router routes without it", Duration.ofSeconds(60), () -> {
                    ExpertPlacement p = cluster.router().placement();
                    return !p.workers().contains(gray) || p.heldBy(p.indexOf(gray)).isEmpty();
                });
                WorkerRecord suspect = WorkerRecord.fromJson(workers.get(gray));
                assertThat(suspect.state()).isEqualTo(WorkerState.SUSPECT);
                assertThat(System.currentTimeMillis() - suspect.heartbeatMillis()).as("its heartbeats went on")
                        .isLessThan(cluster.coordinator().controlPlane().heartbeatInterval().toMillis() * 10);
                assertThat(cluster.router().placement().minReplicas(cfg, java.util.Set.of(gray))).isEqualTo(2);
                int before = traffic.ok.get();
                await("traffic on the new placement", Duration.ofSeconds(30), () -> traffic.ok.get() > before + 5);
                traffic.close();
                assertThat(traffic.failed.get()).as("failed requests: %s", traffic.errors).isZero();
            } finally {
                hung.release();
            }
        }
    }
}
