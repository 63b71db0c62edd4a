package dev.moecluster.cli;

import static dev.moecluster.cli.CoordinatorClusterTest.await;
import static org.assertj.core.api.Assertions.assertThat;

import dev.moecluster.control.WorkerRecord;
import dev.moecluster.control.WorkerState;
import dev.moecluster.coordinator.CoordinatorConfig;
import dev.moecluster.coordinator.CoordinatorServer;
import dev.moecluster.core.model.Architecture;
import dev.moecluster.proto.ControlGrpc;
import dev.moecluster.proto.WorkerHeartbeatRequest;
import io.grpc.ManagedChannel;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.UUID;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;

/**
 * Split-brain protection: a coordinator left without a majority of the cluster's coordinators neither
 * leads nor writes (components asking it get UNAVAILABLE and move on to another), so two sides of a split
 * never both write; once a majority is together again, the oldest member leads.
 */
class CoordinatorQuorumTest {
    private final Path dir = Clusters.tinyModel(Architecture.MIXTRAL);

    @Test
    void aCoordinatorWithoutAMajorityNeitherLeadsNorWritesUntilAMajorityIsBack() throws Exception {
        List<CoordinatorServer> coordinators = new ArrayList<>();
        try {
            coordinators.addAll(Clusters.coordinators(dir, 3));
            await("three members", Duration.ofSeconds(60), () -> coordinators.getFirst().hazelcast().getCluster().getMembers().size() == 3);
            await("one leader", Duration.ofSeconds(30), () -> coordinators.stream().filter(CoordinatorServer::isLeader).count() == 1);
            CoordinatorServer survivor = coordinators.get(2);
            assertThat(heartbeat(survivor)).isEqualTo(Status.Code.OK);

            coordinators.get(0).kill();
            coordinators.get(1).kill();
            await("the survivor sees itself alone", Duration.ofSeconds(60),
                    () -> survivor.hazelcast().getCluster().getMembers().size() == 1);
            // alone it is the oldest member, yet one of three is no majority: it does not lead, and it refuses writes
            assertThat(survivor.isLeader()).isFalse();
            assertThat(heartbeat(survivor)).isEqualTo(Status.Code.UNAVAILABLE);

            int port = LocalCluster.freePort();
            String name = survivor.hazelcast().getConfig().getClusterName();
            var local = survivor.hazelcast().getCluster().getLocalMember().getAddress();
            String survivorAddress = local.getHost() + ":" + local.getPort();
            coordinators.add(CoordinatorServer.start(CoordinatorConfig.local(name, port, dir, 1, 1)
                    .withMembers(List.of(survivorAddress, "127.0.0.1:" + port), port).withExpectedCoordinators(3)));
            await("two of three together again, the survivor (the oldest) leads", Duration.ofSeconds(60), survivor::isLeader);
            assertThat(heartbeat(survivor)).isEqualTo(Status.Code.OK);
        } finally {
            coordinators.forEach(CoordinatorServer::close);
        }
    }

    /** A worker heartbeat to {@code coordinator}'s Control API: OK, or the status it was refused with. */
    private static Status.Code heartbeat(CoordinatorServer coordinator) {
        ManagedChannel channel = Clusters.channel(coordinator.controlAddress());
        try {
            ControlGrpc.newBlockingStub(channel).withDeadlineAfter(15, TimeUnit.SECONDS).workerHeartbeat(WorkerHeartbeatRequest
                    .newBuilder().setWorkerJson(new WorkerRecord("w", "10.0.0.1:50061", "cpu", 1, WorkerState.ACTIVE, Map.of(), 0, 0)
                            .toJson()).build());
            return Status.Code.OK;
        } catch (StatusRuntimeException e) {
            return e.getStatus().getCode();
        } finally {
            channel.shutdownNow();
        }
    }
}
