package dev.moecluster.cli;

import static dev.moecluster.cli.CoordinatorClusterTest.await;
import static org.assertj.core.api.Assertions.assertThat;

import dev.moecluster.coordinator.CoordinatorConfig;
import dev.moecluster.coordinator.CoordinatorServer;
import dev.moecluster.core.model.Architecture;
import dev.moecluster.proto.AdminGrpc;
import dev.moecluster.proto.AdminStatusRequest;
import dev.moecluster.proto.ClusterStatus;
import io.grpc.ManagedChannel;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.UUID;
import org.junit.jupiter.api.Test;

/**
 * The leader's term fences leadership: the first leader of three coordinators holds term 1, every
 * member reports it, and when the leader dies its successor holds a higher term, granted by the
 * surviving members, while nobody else leads.
 */
class LeaderTermTest {
    private final Path dir = Clusters.tinyModel(Architecture.MIXTRAL);

    @Test
    void everyNewLeaderHoldsAHigherTermThanTheOneBefore() throws Exception {
        List<CoordinatorServer> coordinators = new ArrayList<>();
        try {
            coordinators.addAll(Clusters.coordinators(dir, 3));
            await("three members", Duration.ofSeconds(60), () -> coordinators.getFirst().hazelcast().getCluster().getMembers().size() == 3);
            await("one leader", Duration.ofSeconds(30), () -> coordinators.stream().filter(CoordinatorServer::isLeader).count() == 1);
            CoordinatorServer first = coordinators.stream().filter(CoordinatorServer::isLeader).findFirst().orElseThrow();
            await("every member reads the first term", Duration.ofSeconds(30),
                    () -> coordinators.stream().allMatch(c -> status(c).getLeaderTerm() == 1));
            for (CoordinatorServer c : coordinators) {
                ClusterStatus s = status(c);
                assertThat(s.getLeaderTerm()).as("the term every member reports").isEqualTo(1);
                assertThat(s.getLeading()).isEqualTo(c == first);
            }

            first.kill();
            List<CoordinatorServer> survivors = coordinators.stream().filter(c -> c != first).toList();
            await("a successor leads", Duration.ofSeconds(60), () -> survivors.stream().filter(CoordinatorServer::isLeader).count() == 1);
            CoordinatorServer second = survivors.stream().filter(CoordinatorServer::isLeader).findFirst().orElseThrow();
            // the record's partition may be migrating off the dead member for a moment after the grant
            await("every survivor reads the successor's term", Duration.ofSeconds(30),
                    () -> survivors.stream().allMatch(c -> status(c).getLeaderTerm() == 2));
            for (CoordinatorServer c : survivors) {
                ClusterStatus s = status(c);
                assertThat(s.getLeaderTerm()).as("the successor's term").isEqualTo(2);
                assertThat(s.getLeading()).isEqualTo(c == second);
                assertThat(s.getMembersCount()).isEqualTo(2);
            }
        } finally {
            coordinators.forEach(CoordinatorServer::close);
        }
    }

    private static ClusterStatus status(CoordinatorServer c) {
        ManagedChannel channel = Clusters.channel(c.adminAddress());
        try {
            return AdminGrpc.newBlockingStub(channel).status(AdminStatusRequest.getDefaultInstance());
        } finally {
            channel.shutdownNow();
        }
    }
}
