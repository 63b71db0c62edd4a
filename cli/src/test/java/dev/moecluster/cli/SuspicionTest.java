package dev.moecluster.cli;

import static dev.moecluster.cli.CoordinatorClusterTest.await;
import static org.assertj.core.api.Assertions.assertThat;

import dev.moecluster.control.ControlMaps;
import dev.moecluster.control.LoadReport;
import dev.moecluster.control.RouterRecord;
import dev.moecluster.control.WorkerRecord;
import dev.moecluster.control.WorkerState;
import dev.moecluster.coordinator.CoordinatorConfig;
import dev.moecluster.coordinator.CoordinatorServer;
import dev.moecluster.core.model.Architecture;
import dev.moecluster.core.placement.ExpertAssignment;
import dev.moecluster.proto.ControlGrpc;
import dev.moecluster.proto.RouterHeartbeatRequest;
import dev.moecluster.proto.WorkerHealth;
import dev.moecluster.worker.ExpertWorker;
import dev.moecluster.worker.WorkerConfig;
import io.grpc.ManagedChannel;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.UUID;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;

/**
 * The leader's reading of the routers' health reports: a worker that stopped answering is SUSPECT once
 * its batches have failed for four seconds in a row, however many it answered earlier in the report
 * window, while a worker that some router still gets answers from is not.
 */
class SuspicionTest {
    private final Path dir = Clusters.tinyModel(Architecture.MIXTRAL);

    @Test
    void aWorkerThatStoppedAnsweringIsSuspectAtOnceButOneOtherRoutersStillReachIsNot() throws Exception {
        CoordinatorConfig cc = CoordinatorConfig.local("moe-suspect-" + UUID.randomUUID(), LocalCluster.freePort(), dir, 3, 1);
        List<ExpertWorker> workers = new ArrayList<>();
        try (CoordinatorServer coordinator = CoordinatorServer.start(cc)) {
            for (int i = 0; i < 3; i++) {
                workers.add(ExpertWorker.start(WorkerConfig.defaults("worker-" + i, dir, new ExpertAssignment(Map.of()))
                        .withControlPlane(coordinator.controlPlane(), WorkerConfig.DEFAULT_MEMORY_BYTES)));
            }
            var registry = coordinator.hazelcast().<String, String>getMap(ControlMaps.WORKERS);
            await("three workers registered and placed", Duration.ofSeconds(60), () -> registry.size() == 3
                    && coordinator.hazelcast().getMap(ControlMaps.PLACEMENT).get(ControlMaps.CURRENT) != null);
            String stopped = workers.get(0).address();
            String flaky = workers.get(1).address();
            ManagedChannel channel = Clusters.channel(coordinator.controlAddress());
            try {
                var control = ControlGrpc.newBlockingStub(channel);
                long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
                while (state(registry.get(stopped)) != WorkerState.SUSPECT && System.nanoTime() < deadline) {
                    // router a: the stopped worker answered 40 batches earlier in the window, then its last 2 failed;
                    // the flaky one failed its last 4 with router a but answered router b's last batch
                    control.withDeadlineAfter(10, TimeUnit.SECONDS).routerHeartbeat(heartbeat("router-a",
                            health(stopped, 2, 40, 2), health(flaky, 4, 10, 4)));
                    control.withDeadlineAfter(10, TimeUnit.SECONDS).routerHeartbeat(heartbeat("router-b",
                            health(flaky, 2, 8, 0)));
                    Thread.sleep(200);
                }
                assertThat(state(registry.get(stopped))).isEqualTo(WorkerState.SUSPECT);
                assertThat(state(registry.get(flaky))).isEqualTo(WorkerState.ACTIVE);
                assertThat(state(registry.get(workers.get(2).address()))).isEqualTo(WorkerState.ACTIVE);
            } finally {
                channel.shutdownNow();
            }
        } finally {
            workers.forEach(ExpertWorker::close);
        }
    }

    private static WorkerState state(String json) {
        return WorkerRecord.fromJson(json).state();
    }

    private static WorkerHealth health(String worker, long failures, long answers, long streak) {
        return WorkerHealth.newBuilder().setAddress(worker).setFailures(failures).setAnswers(answers).setFailingStreak(streak).build();
    }

    private static RouterHeartbeatRequest heartbeat(String id, WorkerHealth... health) {
        long now = System.currentTimeMillis();
        return RouterHeartbeatRequest.newBuilder().setRouterJson(new RouterRecord(id, "10.0.0.7:50051", 1, now).toJson())
                .setLoadJson(new LoadReport(id, now, Map.of()).toJson()).addAllWorkerHealth(List.of(health)).build();
    }
}
