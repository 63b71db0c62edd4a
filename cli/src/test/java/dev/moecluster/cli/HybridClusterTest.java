package dev.moecluster.cli;

import static dev.moecluster.cli.CoordinatorClusterTest.await;
import static org.assertj.core.api.Assertions.assertThat;

import dev.moecluster.core.model.Architecture;
import dev.moecluster.proto.AdminGrpc;
import dev.moecluster.proto.AdminStatusRequest;
import dev.moecluster.proto.GetLoadRequest;
import dev.moecluster.proto.LoadInfo;
import dev.moecluster.proto.RebalanceRequest;
import dev.moecluster.proto.WorkerTime;
import dev.moecluster.worker.ExpertWorker;
import io.grpc.ManagedChannel;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;

/**
 * A hybrid cluster without a GPU: two workers report 25× the speed of two others (as a cuda worker
 * would beside cpu workers), and the coordinator balances time, not rows.
 */
class HybridClusterTest {
    private final Path dir = Clusters.tinyModel(Architecture.MIXTRAL);

    private static AdminGrpc.AdminBlockingStub admin(ManagedChannel ch) {
        return AdminGrpc.newBlockingStub(ch).withDeadlineAfter(15, TimeUnit.SECONDS);
    }

    private static void sleep(long millis) {
        try {
            Thread.sleep(millis);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    /** Share of the routed rows the given workers' copies carry. */
    private static double rowShare(LoadInfo load, List<String> workers) {
        double all = load.getWorkersList().stream().mapToDouble(WorkerTime::getRows).sum();
        double theirs = load.getWorkersList().stream().filter(w -> workers.contains(w.getAddress()))
                .mapToDouble(WorkerTime::getRows).sum();
        return all == 0 ? 0 : theirs / all;
    }

    @Test
    void hotExpertsGoToTheFastWorkersAndAdminShowsEachWorkersTimeShare() throws Exception {
        var options = LocalCluster.Options.of(dir, 4, 1).withCoordinator(true)
                .withThroughputs(i -> i < 2 ? 50_000 : 2_000);
        try (LocalCluster cluster = LocalCluster.start(options)) {
            List<String> fast = cluster.workers().subList(0, 2).stream().map(ExpertWorker::address).toList();
            ManagedChannel adm = Clusters.channel(cluster.coordinator().adminAddress());
            try {
                for (int layer : cluster.model().moeLayerList()) {
                    Clusters.moeForwardCalls(cluster, layer, 8, 16);
                }
                await("the coordinator sees the load", Duration.ofSeconds(30), () -> admin(adm)
                        .getLoad(GetLoadRequest.getDefaultInstance()).getWorkersList().stream()
                        .mapToDouble(WorkerTime::getRows).sum() > 0);
                double before = rowShare(admin(adm).getLoad(GetLoadRequest.getDefaultInstance()), fast);

                // The load window fills as routers report, so a plan made on the first report may be
                // out of date by the next: ask again until the plan has seen the load.
                await("the fast workers carry most rows", Duration.ofSeconds(60), () -> {
                    boolean idle = admin(adm).status(AdminStatusRequest.getDefaultInstance()).getRollout().equals("idle");
                    if (idle && rowShare(admin(adm).getLoad(GetLoadRequest.getDefaultInstance()), fast) > 0.8) {
                        return true;
                    }
                    if (idle) {
                        admin(adm).rebalance(RebalanceRequest.getDefaultInstance());
                        sleep(500);
                    }
                    return false;
                });

                LoadInfo load = admin(adm).getLoad(GetLoadRequest.getDefaultInstance());
                assertThat(before).as("a plan made before any load balances expert counts").isLessThan(0.8);
                double busiest = load.getWorkersList().stream().mapToDouble(WorkerTime::getSeconds).max().orElseThrow();
                assertThat(load.getIdealSeconds()).isPositive();
                assertThat(busiest / load.getIdealSeconds()).isGreaterThanOrEqualTo(1.0 - 1e-9);
                assertThat(load.getWorkersList().stream().mapToDouble(WorkerTime::getTimeShare).sum())
                        .isCloseTo(1.0, org.assertj.core.data.Offset.offset(1e-9));
                for (WorkerTime w : load.getWorkersList()) {
                    assertThat(w.getRowsPerS()).isEqualTo(fast.contains(w.getAddress()) ? 50_000 : 2_000);
                    assertThat(w.getSeconds()).isCloseTo(w.getRows() / w.getRowsPerS(), org.assertj.core.data.Offset.offset(1e-12));
                }

                String target = cluster.coordinator().adminAddress();
                Object[] text = MoeCommandTest.run("admin", "load", "--target", target);
                assertThat(text[0]).as("stderr: %s", text[2]).isEqualTo(0);
                assertThat((String) text[1]).contains("compute time per worker", "time share", fast.get(0))
                        .containsPattern("busiest worker [0-9.]+ s, ideal [0-9.]+ s");
                Object[] workers = MoeCommandTest.run("admin", "workers", "--target", target);
                assertThat(workers[0]).as("stderr: %s", workers[2]).isEqualTo(0);
                assertThat((String) workers[1]).contains("50000 (given)", "2000 (given)");
            } finally {
                adm.shutdownNow();
            }
        }
    }
}
