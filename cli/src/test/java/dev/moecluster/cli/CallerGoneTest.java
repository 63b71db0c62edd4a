package dev.moecluster.cli;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.moecluster.core.model.Architecture;
import dev.moecluster.core.model.ModelConfig;
import dev.moecluster.core.moe.ReferenceMoeBlock;
import dev.moecluster.core.tensor.DType;
import dev.moecluster.core.tensor.FloatMatrix;
import dev.moecluster.proto.MoeForwardResponse;
import io.grpc.ManagedChannel;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import java.nio.file.Path;
import java.time.Duration;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;

/**
 * Work whose caller is gone is dropped: a MoeForward whose deadline passes while its batch waits
 * behind another on the worker is withdrawn there and never computed, while the call ahead of it is
 * answered in full.
 */
class CallerGoneTest {
    private final Path dir = Clusters.tinyModel(Architecture.MIXTRAL);

    @Test
    void aCallWhoseDeadlinePassesIsWithdrawnFromTheWorkerQueue() throws Exception {
        GatedBackend gated = new GatedBackend();
        try (LocalCluster cluster = LocalCluster.start(LocalCluster.Options.of(dir, 1, 1).withBackends(i -> gated));
                ReferenceMoeBlock reference = ReferenceMoeBlock.open(dir)) {
            ModelConfig cfg = cluster.model();
            int layer = cfg.moeLayerList().getFirst();
            FloatMatrix x = Clusters.hidden(cfg, 4, 21, DType.F32);
            ManagedChannel channel = Clusters.channel(cluster.router().address());
            try {
                gated.arm();
                CompletableFuture<MoeForwardResponse> ahead = CompletableFuture.supplyAsync(() -> Clusters.stub(channel)
                        .withDeadlineAfter(60, TimeUnit.SECONDS).moeForward(Clusters.request(layer, x, DType.F32)));
                assertThat(gated.awaitEntered()).as("the first call's batch is computing").isTrue();
                assertThatThrownBy(() -> Clusters.stub(channel).withDeadlineAfter(1, TimeUnit.SECONDS)
                        .moeForward(Clusters.request(layer, x, DType.F32)))
                        .isInstanceOf(StatusRuntimeException.class)
                        .satisfies(e -> assertThat(((StatusRuntimeException) e).getStatus().getCode())
                                .isEqualTo(Status.Code.DEADLINE_EXCEEDED));
                Thread.sleep(300); // the withdrawal reaches the worker while the first batch is still held
                gated.release();
                FloatMatrix y = Clusters.output(ahead.get(60, TimeUnit.SECONDS));
                assertThat(Clusters.relativeError(y, reference.forward(layer, x).output())).isLessThan(1e-5);
                CoordinatorClusterTest.await("the queued batch answered as withdrawn", Duration.ofSeconds(30),
                        () -> cluster.workers().getFirst().batchesWithdrawn() == 1);
                assertThat(cluster.workers().getFirst().batchesServed()).as("only the first call's batch computed").isEqualTo(1);
            } finally {
                channel.shutdownNow();
            }
        }
    }
}
