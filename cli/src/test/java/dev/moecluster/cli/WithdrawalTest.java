package dev.moecluster.cli;

import static org.assertj.core.api.Assertions.assertThat;

import dev.moecluster.control.wire.WireTensors;
import dev.moecluster.core.model.Architecture;
import dev.moecluster.core.model.ModelConfig;
import dev.moecluster.core.tensor.DType;
import dev.moecluster.core.tensor.FloatMatrix;
import dev.moecluster.proto.ExpertBatch;
import dev.moecluster.proto.ExpertResult;
import dev.moecluster.proto.ExpertServiceGrpc;
import dev.moecluster.proto.ExpertSlice;
import dev.moecluster.proto.Tensor;
import io.grpc.ManagedChannel;
import io.grpc.Status;
import io.grpc.stub.StreamObserver;
import java.nio.file.Path;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;

/**
 * The loser of a hedge race is withdrawn: a batch the router withdraws before the worker starts on it
 * is dropped and answered CANCELLED, one already computing is answered as usual, and the stream goes
 * on serving.
 */
class WithdrawalTest {
    private final Path dir = Clusters.tinyModel(Architecture.MIXTRAL);

    @Test
    void aWithdrawnBatchIsDroppedBeforeItIsComputedAndAnsweredCancelled() throws Exception {
        GatedBackend gated = new GatedBackend();
        try (LocalCluster cluster = LocalCluster.start(LocalCluster.Options.of(dir, 1, 1).withBackends(i -> gated))) {
            ModelConfig cfg = cluster.model();
            int layer = cfg.moeLayerList().getFirst();
            Map<Long, ExpertResult> results = new ConcurrentHashMap<>();
            CountDownLatch three = new CountDownLatch(3);
            ManagedChannel ch = Clusters.channel(cluster.workers().getFirst().address());
            try {
                StreamObserver<ExpertBatch> stream = ExpertServiceGrpc.newStub(ch).compute(new StreamObserver<>() {
                    @Override
                    public void onNext(ExpertResult r) {
                        results.put(r.getId(), r);
                        three.countDown();
                    }

                    @Override
                    public void onError(Throwable t) {}

                    @Override
                    public void onCompleted() {}
                });
                Tensor act = WireTensors.encode(Clusters.hidden(cfg, 2, 8, DType.F32), DType.F32);
                gated.arm();
                stream.onNext(batch(1, layer, act)); // the worker starts on it and is held there
                assertThat(gated.awaitEntered()).isTrue();
                stream.onNext(batch(2, layer, act)); // queued behind it ...
                stream.onNext(ExpertBatch.newBuilder().setId(2).setWithdraw(true).build()); // ... and withdrawn
                stream.onNext(ExpertBatch.newBuilder().setId(1).setWithdraw(true).build()); // too late: computing
                Thread.sleep(200); // let the withdrawals arrive while batch 1 is held
                gated.release();
                stream.onNext(batch(3, layer, act)); // the stream serves on
                assertThat(three.await(30, TimeUnit.SECONDS)).as("three results, got %s", results.keySet()).isTrue();
                stream.onCompleted();
            } finally {
                ch.shutdownNow();
            }
            assertThat(results.get(2L).getErrorCode()).isEqualTo(Status.Code.CANCELLED.value());
            assertThat(results.get(2L).getErrorMessage()).contains("withdrawn");
            for (long answered : new long[] {1, 3}) {
                ExpertResult r = results.get(answered);
                assertThat(r.getErrorCode()).as("batch %d", answered).isZero();
                FloatMatrix y = WireTensors.decode(r.getOutputs(), "outputs");
                assertThat(y.rows()).isEqualTo(2);
            }
            assertThat(results).hasSize(3);
            assertThat(cluster.workers().getFirst().batchesWithdrawn()).isEqualTo(1);
        }
    }

    private static ExpertBatch batch(long id, int layer, Tensor act) {
        return ExpertBatch.newBuilder().setId(id).setLayer(layer)
                .addSlices(ExpertSlice.newBuilder().setExpert(0).setRows(2)).setActivations(act).build();
    }
}
