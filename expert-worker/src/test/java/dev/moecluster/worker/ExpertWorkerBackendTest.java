package dev.moecluster.worker;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.junit.jupiter.api.Assumptions.assumeFalse;

import dev.moecluster.core.model.Architecture;
import dev.moecluster.core.model.ModelConfig;
import dev.moecluster.core.model.ModelGenerator;
import dev.moecluster.core.placement.ExpertAssignment;
import dev.moecluster.proto.DescribeRequest;
import dev.moecluster.proto.ExpertServiceGrpc;
import dev.moecluster.worker.cuda.CudaAvailability;
import io.grpc.ManagedChannel;
import io.grpc.netty.shaded.io.grpc.netty.NettyChannelBuilder;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** A worker started from its config runs on the backend the config names. */
class ExpertWorkerBackendTest {
    @TempDir
    Path model;

    private WorkerConfig config(String backend) throws Exception {
        ModelConfig c = ModelGenerator.generate(ModelGenerator.Spec.tiny(Architecture.MIXTRAL), model);
        WorkerConfig d = WorkerConfig.defaults("w0", model, ExpertAssignment.parse("all", c));
        return new WorkerConfig(d.workerId(), d.host(), d.port(), d.modelDir(), d.assignment(), backend,
                d.coalesceWindow(), d.maxInboundMessageBytes(), d.maxBatchesInFlightPerStream(), null, WorkerConfig.DEFAULT_MEMORY_BYTES, -1, true);
    }

    @Test
    void autoServesOnCpuWhereNoGpuIsUsable() throws Exception {
        assumeFalse(CudaAvailability.probe().usable(), "this machine has a usable GPU");
        try (ExpertWorker worker = ExpertWorker.start(config("auto"))) {
            ManagedChannel channel = NettyChannelBuilder.forTarget(worker.address()).usePlaintext().build();
            try {
                var description = ExpertServiceGrpc.newBlockingStub(channel).describe(DescribeRequest.getDefaultInstance());
                assertThat(description.getBackend()).isEqualTo("cpu");
            } finally {
                channel.shutdownNow();
            }
        }
    }

    @Test
    void cudaRefusesToStartWhereNoGpuIsUsable() throws Exception {
        assumeFalse(CudaAvailability.probe().usable(), "this machine has a usable GPU");
        WorkerConfig cuda = config("cuda");
        assertThatThrownBy(() -> ExpertWorker.start(cuda))
                .isInstanceOf(IllegalStateException.class)
                .hasMessageStartingWith("backend cuda is unavailable: ");
    }

    @Test
    void aWorkerMeasuresItsBackendAtStartOrReportsTheFigureItIsGiven() throws Exception {
        WorkerConfig base = config("cpu");
        try (ExpertWorker measured = ExpertWorker.start(base)) {
            var t = measured.throughput();
            assertThat(t.fixed()).isFalse();
            assertThat(t.smallBatchRows()).isEqualTo(4);
            assertThat(t.largeBatchRows()).isEqualTo(256);
            assertThat(t.smallBatchRowsPerSecond()).isPositive();
            assertThat(t.largeBatchRowsPerSecond()).isPositive();
            assertThat(measured.expertCount()).as("the calibration expert is not held").isEqualTo(base.assignment().expertCount());
        }
        try (ExpertWorker given = ExpertWorker.start(base.withThroughput(12_345))) {
            assertThat(given.throughput().planningRowsPerSecond()).isEqualTo(12_345);
            assertThat(given.throughput().fixed()).isTrue();
        }
        try (ExpertWorker none = ExpertWorker.start(base.withThroughput(0))) {
            assertThat(none.throughput().planningRowsPerSecond()).isZero();
        }
        assertThatThrownBy(() -> base.withThroughput(-2)).isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("-1 to measure it");
    }
}
