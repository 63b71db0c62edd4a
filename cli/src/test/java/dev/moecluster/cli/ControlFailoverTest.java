package dev.moecluster.cli;

import static org.assertj.core.api.Assertions.assertThat;

import dev.moecluster.control.ControlClient;
import dev.moecluster.control.ControlPlaneConfig;
import dev.moecluster.control.WorkerRecord;
import dev.moecluster.control.WorkerState;
import dev.moecluster.coordinator.CoordinatorConfig;
import dev.moecluster.coordinator.CoordinatorServer;
import dev.moecluster.core.model.Architecture;
import dev.moecluster.proto.WorkerHeartbeatRequest;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.UUID;
import java.util.concurrent.CopyOnWriteArrayList;
import org.junit.jupiter.api.Test;

/**
 * A control call does not wait on a coordinator that accepts connections but never answers (one cut
 * off from the others stalls so): the same call goes on to the next coordinator within its heartbeat
 * period, so the component's heartbeat is not missed.
 */
class ControlFailoverTest {
    private final Path dir = Clusters.tinyModel(Architecture.MIXTRAL);

    @Test
    void aHeartbeatPassesAStalledCoordinatorWithinOneCall() throws Exception {
        List<Socket> held = new CopyOnWriteArrayList<>();
        try (ServerSocket stalled = new ServerSocket(0, 50, InetAddress.getLoopbackAddress());
                CoordinatorServer coordinator = CoordinatorServer.start(
                        CoordinatorConfig.local("moe-failover-" + UUID.randomUUID(), LocalCluster.freePort(), dir, 1, 1))) {
            Thread.ofVirtual().start(() -> {
                try {
                    while (true) {
                        held.add(stalled.accept()); // accepts, reads nothing, answers nothing
                    }
                } catch (java.io.IOException closed) {
                    // the test is over
                }
            });
            String silent = "127.0.0.1:" + stalled.getLocalPort();
            ControlPlaneConfig cp = ControlPlaneConfig.of(List.of(silent, coordinator.controlAddress()))
                    .withHeartbeatInterval(Duration.ofSeconds(1));
            try (ControlClient client = ControlClient.connect(cp, "test-worker")) {
                WorkerHeartbeatRequest hello = WorkerHeartbeatRequest.newBuilder().setFirst(true).setWorkerJson(
                        new WorkerRecord("w", "127.0.0.1:50061", "cpu", 1L << 30, WorkerState.ACTIVE, Map.of(), 0, 0).toJson()).build();
                var answer = client.workerHeartbeat(hello);
                assertThat(answer).as("answered by the second coordinator in the same call").isPresent();
                assertThat(WorkerRecord.fromJson(answer.get().getWorkerJson()).address()).isEqualTo("127.0.0.1:50061");
                assertThat(held).as("the first coordinator was tried").isNotEmpty();
                // and the next call goes straight to the one that answered
                assertThat(client.workerHeartbeat(hello.toBuilder().setFirst(false).build())).isPresent();
            }
        } finally {
            for (Socket s : held) {
                s.close();
            }
        }
    }
}
