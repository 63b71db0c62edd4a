package dev.moecluster.cli;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import com.google.protobuf.ByteString;
import dev.moecluster.core.model.Architecture;
import dev.moecluster.core.model.ModelConfig;
import dev.moecluster.core.moe.ReferenceMoeBlock;
import dev.moecluster.core.placement.ExpertPlacement;
import dev.moecluster.core.tensor.DType;
import dev.moecluster.core.tensor.FloatMatrix;
import dev.moecluster.control.wire.WireTensors;
import dev.moecluster.proto.ExpertBatch;
import dev.moecluster.proto.ExpertResult;
import dev.moecluster.proto.ExpertServiceGrpc;
import dev.moecluster.proto.ExpertSlice;
import dev.moecluster.proto.MoeForwardRequest;
import dev.moecluster.proto.Tensor;
import dev.moecluster.router.RouterConfig;
import dev.moecluster.router.RouterServer;
import dev.moecluster.worker.ExpertWorker;
import io.grpc.CallOptions;
import io.grpc.ManagedChannel;
import io.grpc.MethodDescriptor;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.stub.ClientCalls;
import io.grpc.stub.StreamObserver;
import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.function.Consumer;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * Every kind of bad input gets a gRPC status with a clear message, and the servers keep serving
 * correct results afterwards. The model is a tiny Llama 4 (layer 0 dense, layer 1 MoE).
 */
class BadInputTest {
    private static Path dir;
    private static LocalCluster cluster;
    private static ReferenceMoeBlock reference;
    private static ManagedChannel channel;
    private static ModelConfig cfg;

    @BeforeAll
    static void start() throws Exception {
        dir = Clusters.tinyModel(Architecture.LLAMA4);
        cluster = LocalCluster.start(LocalCluster.Options.of(dir, 3, 1));
        reference = ReferenceMoeBlock.open(dir);
        channel = Clusters.channel(cluster.router().address());
        cfg = cluster.model();
        assertThat(cfg.moeLayerList()).containsExactly(1);
    }

    @AfterAll
    static void stop() {
        channel.shutdownNow();
        reference.close();
        cluster.close();
    }

    /** Asserts the call fails with {@code code} and a message containing {@code text}, then that the cluster still serves. */
    private static void rejected(MoeForwardRequest request, Status.Code code, String text) {
        assertThatThrownBy(() -> Clusters.stub(channel).moeForward(request))
                .isInstanceOfSatisfying(StatusRuntimeException.class, e -> {
                    assertThat(e.getStatus().getCode()).isEqualTo(code);
                    assertThat(e.getStatus().getDescription()).contains(text);
                });
        stillServes();
    }

    private static void stillServes() {
        FloatMatrix x = Clusters.hidden(cfg, 5, 99, DType.F32);
        FloatMatrix y = Clusters.output(Clusters.stub(channel).moeForward(Clusters.request(1, x, DType.F32)));
        assertThat(Clusters.relativeError(y, reference.forward(1, x).output())).isLessThan(1e-5);
    }

    private static MoeForwardRequest.Builder valid() {
        return Clusters.request(1, Clusters.hidden(cfg, 4, 1, DType.F32), DType.F32).toBuilder();
    }

    @Test
    void wrongHiddenSizeIsInvalidArgument() {
        FloatMatrix x = new FloatMatrix(2, 32, new float[64]);
        rejected(Clusters.request(1, x, DType.F32), Status.Code.INVALID_ARGUMENT, "hidden_size is 64");
    }

    @Test
    void unknownLayerIsInvalidArgument() {
        rejected(valid().setLayer(7).build(), Status.Code.INVALID_ARGUMENT, "layer 7 is out of range: the model has 2 layers");
        rejected(valid().setLayer(-1).build(), Status.Code.INVALID_ARGUMENT, "layer -1 is out of range");
    }

    @Test
    void denseLayerIsInvalidArgument() {
        rejected(valid().setLayer(0).build(), Status.Code.INVALID_ARGUMENT, "layer 0 is a dense layer, not a MoE layer (MoE layers: [1])");
    }

    @Test
    void nanInInputIsInvalidArgument() {
        FloatMatrix x = Clusters.hidden(cfg, 3, 2, DType.F32);
        x.data()[cfg.hiddenSize() + 5] = Float.NaN;
        rejected(Clusters.request(1, x, DType.F32), Status.Code.INVALID_ARGUMENT, "non-finite value (NaN or infinity) at token 1, column 5");
        x.data()[cfg.hiddenSize() + 5] = Float.POSITIVE_INFINITY;
        rejected(Clusters.request(1, x, DType.BF16), Status.Code.INVALID_ARGUMENT, "at token 1, column 5");
    }

    @Test
    void emptyBatchIsInvalidArgument() {
        rejected(Clusters.request(1, new FloatMatrix(0, 64, new float[0]), DType.F32), Status.Code.INVALID_ARGUMENT,
                "hidden_states is empty");
        rejected(MoeForwardRequest.newBuilder().setLayer(1).build(), Status.Code.INVALID_ARGUMENT, "hidden_states is missing");
    }

    @Test
    void malformedTensorIsInvalidArgument() {
        Tensor good = valid().getHiddenStates();
        rejected(valid().setHiddenStates(good.toBuilder().setData(good.getData().substring(4))).build(),
                Status.Code.INVALID_ARGUMENT, "needs 1024 bytes of data, got 1020");
        rejected(valid().setHiddenStates(good.toBuilder().clearShape().addShape(256)).build(),
                Status.Code.INVALID_ARGUMENT, "expected shape [tokens, hidden]");
        rejected(valid().setHiddenStates(good.toBuilder().setDtype(dev.moecluster.proto.DType.DTYPE_UNSPECIFIED)).build(),
                Status.Code.INVALID_ARGUMENT, "dtype is unset");
    }

    @Test
    void unknownModelIsNotFound() {
        rejected(valid().setModel("llama-9000").build(), Status.Code.NOT_FOUND, "model 'llama-9000' is not served here");
    }

    @Test
    void tooManyTokensIsResourceExhausted() throws Exception {
        var rc = RouterConfig.defaults(dir, cluster.placement()).withMaxTokensPerRequest(8);
        try (RouterServer small = RouterServer.start(rc)) {
            ManagedChannel ch = Clusters.channel(small.address());
            try {
                MoeForwardRequest big = Clusters.request(1, Clusters.hidden(cfg, 9, 4, DType.F32), DType.F32);
                assertThatThrownBy(() -> Clusters.stub(ch).moeForward(big))
                        .isInstanceOfSatisfying(StatusRuntimeException.class, e -> {
                            assertThat(e.getStatus().getCode()).isEqualTo(Status.Code.RESOURCE_EXHAUSTED);
                            assertThat(e.getStatus().getDescription()).contains("9 tokens; this router accepts at most 8");
                        });
            } finally {
                ch.shutdownNow();
            }
        }
    }

    @Test
    void oversizedMessageIsResourceExhausted() throws Exception {
        var rc = RouterConfig.defaults(dir, cluster.placement()).withMaxInboundMessageBytes(64 * 1024).withMetricsPort(0);
        try (RouterServer small = RouterServer.start(rc)) {
            ManagedChannel ch = Clusters.channel(small.address());
            try {
                MoeForwardRequest big = Clusters.request(1, Clusters.hidden(cfg, 300, 4, DType.F32), DType.F32); // ~77 KB
                assertThatThrownBy(() -> Clusters.stub(ch).moeForward(big))
                        .isInstanceOfSatisfying(StatusRuntimeException.class, e -> {
                            assertThat(e.getStatus().getCode()).isEqualTo(Status.Code.RESOURCE_EXHAUSTED);
                            assertThat(e.getStatus().getDescription()).contains("exceeds maximum");
                        });
                // refused by gRPC's size limit before any handler ran, and counted all the same
                assertThat(eventually(() -> count(small.metricsPort(), "moe_router_requests_total", "MoeForward",
                        "RESOURCE_EXHAUSTED"), 1)).isEqualTo(1);
                // the same router still serves calls within its limit
                FloatMatrix x = Clusters.hidden(cfg, 4, 5, DType.F32);
                FloatMatrix y = Clusters.output(Clusters.stub(ch).moeForward(Clusters.request(1, x, DType.F32)));
                assertThat(Clusters.relativeError(y, reference.forward(1, x).output())).isLessThan(1e-5);
            } finally {
                ch.shutdownNow();
            }
        }
        stillServes();
    }

    @Test
    void workerAskedForAnExpertItDoesNotHoldAnswersNotFoundAndKeepsTheStream() throws Exception {
        ExpertPlacement p = cluster.placement();
        String address = p.workers().get(0);
        int held = p.heldBy(0).get(1).iterator().next();
        int notHeld = -1;
        for (int e = 0; e < cfg.numExperts(); e++) {
            if (!p.heldBy(0).get(1).contains(e)) {
                notHeld = e;
                break;
            }
        }
        ManagedChannel ch = Clusters.channel(address);
        try {
            LinkedBlockingQueue<Object> results = new LinkedBlockingQueue<>();
            StreamObserver<ExpertBatch> stream = ExpertServiceGrpc.newStub(ch).compute(collect(results::add));
            FloatMatrix x = Clusters.hidden(cfg, 2, 8, DType.F32);
            Tensor act = WireTensors.encode(x, DType.F32);
            stream.onNext(batch(1, 1, notHeld, 2, act));
            stream.onNext(batch(2, 0, held, 2, act)); // dense layer
            stream.onNext(batch(3, 1, held, 3, act)); // rows do not add up
            stream.onNext(batch(4, 1, held, 2, act.toBuilder().setData(ByteString.copyFrom(new byte[12])).build()));
            stream.onNext(batch(5, 1, held, 2, act)); // valid: the stream must still work
            stream.onNext(batch(6, 1, held, 2, act.toBuilder().setDtype(dev.moecluster.proto.DType.DTYPE_UNSPECIFIED).build()));
            Tensor fp8 = WireTensors.encode(x, DType.FP8_E4M3);
            stream.onNext(batch(7, 1, held, 2, fp8.toBuilder().setScales(ByteString.copyFrom(new byte[4])).build()));
            // Two slices whose int row counts wrap to the real row count (2^31 - 1 + 2^31 - 1 + 4 = 2 in 32 bits).
            stream.onNext(ExpertBatch.newBuilder().setId(8).setLayer(1)
                    .addSlices(ExpertSlice.newBuilder().setExpert(held).setRows(Integer.MAX_VALUE))
                    .addSlices(ExpertSlice.newBuilder().setExpert(held).setRows(Integer.MAX_VALUE))
                    .addSlices(ExpertSlice.newBuilder().setExpert(held).setRows(4))
                    .setActivations(act).build());
            stream.onNext(batch(9, 1, held, 2, fp8)); // valid fp8: answered in fp8
            List<ExpertResult> got = new java.util.ArrayList<>();
            for (int i = 0; i < 9; i++) {
                Object o = results.poll(30, TimeUnit.SECONDS);
                assertThat(o).isInstanceOf(ExpertResult.class);
                got.add((ExpertResult) o);
            }
            got.sort(java.util.Comparator.comparingLong(ExpertResult::getId));
            assertThat(got.get(0).getErrorCode()).isEqualTo(Status.Code.NOT_FOUND.value());
            assertThat(got.get(0).getErrorMessage()).contains("does not hold expert " + notHeld + " of layer 1");
            assertThat(got.get(1).getErrorCode()).isEqualTo(Status.Code.INVALID_ARGUMENT.value());
            assertThat(got.get(1).getErrorMessage()).contains("layer 0 is not a MoE layer");
            assertThat(got.get(2).getErrorMessage()).contains("slices add up to 3 rows but activations have 2");
            assertThat(got.get(3).getErrorMessage()).contains("needs 512 bytes of data, got 12");
            assertThat(got.get(4).getErrorCode()).isZero();
            assertThat(got.get(4).getOutputs().getShapeList()).containsExactly(2L, 64L);
            assertThat(got.get(5).getErrorCode()).isEqualTo(Status.Code.INVALID_ARGUMENT.value());
            assertThat(got.get(5).getErrorMessage()).contains("dtype is unset or unknown");
            assertThat(got.get(6).getErrorCode()).isEqualTo(Status.Code.INVALID_ARGUMENT.value());
            assertThat(got.get(6).getErrorMessage()).contains("FP8_E4M3 needs one f32 scale per row (8 bytes), got 4");
            assertThat(got.get(7).getErrorCode()).isEqualTo(Status.Code.INVALID_ARGUMENT.value());
            assertThat(got.get(7).getErrorMessage()).contains("slices add up to 4294967298 rows but activations have 2");
            assertThat(got.get(8).getErrorCode()).isZero();
            assertThat(got.get(8).getOutputs().getDtype()).isEqualTo(dev.moecluster.proto.DType.FP8_E4M3);
            assertThat(got.get(8).getOutputs().getScales().size()).isEqualTo(8);
            stream.onCompleted();
        } finally {
            ch.shutdownNow();
        }
        stillServes();
    }

    @Test
    void aMalformedFrameOnTheDataPlaneIsCountedAsInvalidArgumentAndTheWorkerKeepsServing() throws Exception {
        ExpertWorker worker = cluster.workers().getFirst();
        double before = count(worker.metricsPort(), "moe_worker_requests_total", "Compute", "INVALID_ARGUMENT");
        ManagedChannel ch = Clusters.channel(worker.address());
        try {
            MethodDescriptor<byte[], byte[]> raw = ExpertServiceGrpc.getComputeMethod().toBuilder(BYTES, BYTES).build();
            LinkedBlockingQueue<Object> events = new LinkedBlockingQueue<>();
            StreamObserver<byte[]> stream = ClientCalls.asyncBidiStreamingCall(ch.newCall(raw, CallOptions.DEFAULT), new StreamObserver<>() {
                @Override
                public void onNext(byte[] value) {
                    events.add(value);
                }

                @Override
                public void onError(Throwable t) {
                    events.add(t);
                }

                @Override
                public void onCompleted() {
                    events.add("completed");
                }
            });
            stream.onNext(new byte[] {0x0a, 0x05, 'a'}); // field 1 says 5 bytes, 1 follows
            Object end = events.poll(30, TimeUnit.SECONDS);
            assertThat(end).isInstanceOfSatisfying(StatusRuntimeException.class,
                    e -> assertThat(e.getStatus().getCode()).isEqualTo(Status.Code.INVALID_ARGUMENT));
        } finally {
            ch.shutdownNow();
        }
        assertThat(count(worker.metricsPort(), "moe_worker_requests_total", "Compute", "INVALID_ARGUMENT") - before).isEqualTo(1);
        stillServes();
    }

    /** {@code series} of calls to {@code method} that ended with {@code code} (0 before the first such call). */
    private static double count(int metricsPort, String series, String method, String code) throws Exception {
        Exposition e = Exposition.scrape(metricsPort);
        return e.names().contains(series) ? e.sum(series, s -> s.is("method", method) && s.is("code", code)) : 0;
    }

    /** {@code value} once it reaches {@code atLeast} (or after 30 s): for counts the transport makes after the client saw the call end. */
    private static double eventually(java.util.concurrent.Callable<Double> value, double atLeast) throws Exception {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
        double v;
        while ((v = value.call()) < atLeast && System.nanoTime() < deadline) {
            Thread.sleep(20);
        }
        return v;
    }

    private static final MethodDescriptor.Marshaller<byte[]> BYTES = new MethodDescriptor.Marshaller<>() {
        @Override
        public InputStream stream(byte[] value) {
            return new ByteArrayInputStream(value);
        }

        @Override
        public byte[] parse(InputStream stream) {
            try {
                return stream.readAllBytes();
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
        }
    };

    private static ExpertBatch batch(long id, int layer, int expert, int rows, Tensor act) {
        return ExpertBatch.newBuilder().setId(id).setLayer(layer)
                .addSlices(ExpertSlice.newBuilder().setExpert(expert).setRows(rows))
                .setActivations(act).build();
    }

    private static StreamObserver<ExpertResult> collect(Consumer<Object> sink) {
        return new StreamObserver<>() {
            @Override
            public void onNext(ExpertResult value) {
                sink.accept(value);
            }

            @Override
            public void onError(Throwable t) {
                sink.accept(t);
            }

            @Override
            public void onCompleted() {}
        };
    }
}
