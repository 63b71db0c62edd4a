package dev.moecluster.cli;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.moecluster.core.model.Architecture;
import dev.moecluster.core.model.ModelConfig;
import dev.moecluster.core.moe.ReferenceMoeBlock;
import dev.moecluster.core.placement.ExpertPlacement;
import dev.moecluster.core.tensor.DType;
import dev.moecluster.core.tensor.FloatMatrix;
import dev.moecluster.proto.GenerateRequest;
import dev.moecluster.proto.GenerateResponse;
import dev.moecluster.proto.MoeForwardRequest;
import dev.moecluster.proto.MoeForwardResponse;
import dev.moecluster.proto.RouterGrpc;
import dev.moecluster.proto.Tensor;
import dev.moecluster.router.RouterConfig;
import dev.moecluster.router.RouterServer;
import io.grpc.CallOptions;
import io.grpc.Context;
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
import java.time.Duration;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * MoeForward under load and abuse: admission by tokens in flight, limits checked from the shape,
 * abandoned calls, outputs that overflow, malformed messages. One worker of the tiny Llama 4 (layer 1
 * is its MoE layer), reached directly or through a {@link GatedWorker} that holds batches.
 */
class MoeForwardBoundsTest {
    private static Path dir;
    private static LocalCluster cluster;
    private static ReferenceMoeBlock reference;
    private static ModelConfig cfg;

    @BeforeAll
    static void start() throws Exception {
        dir = Clusters.tinyModel(Architecture.LLAMA4);
        cluster = LocalCluster.start(LocalCluster.Options.of(dir, 1, 1));
        reference = ReferenceMoeBlock.open(dir);
        cfg = cluster.model();
    }

    @AfterAll
    static void stop() {
        reference.close();
        cluster.close();
    }

    /** A router whose only worker is reached through {@code gated}; batches wait there as long as the test says. */
    private static RouterConfig through(GatedWorker gated) {
        ExpertPlacement p = cluster.placement();
        return RouterConfig.defaults(dir, new ExpertPlacement(p.epoch(), List.of(gated.address()), p.layers()))
                .withExpertTimeout(Duration.ofMinutes(5));
    }

    private static void servesASmallCallCorrectly(ManagedChannel ch) {
        FloatMatrix x = Clusters.hidden(cfg, 3, 77, DType.F32);
        FloatMatrix y = Clusters.output(Clusters.stub(ch).moeForward(Clusters.request(1, x, DType.F32)));
        assertThat(Clusters.relativeError(y, reference.forward(1, x).output())).isLessThan(1e-5);
    }

    @Test
    void aStormOfLargeCallsIsAdmittedUpToTheTokensInFlightAndTheRestRefusedAtOnce() throws Exception {
        try (GatedWorker gated = new GatedWorker(cluster.placement().workers().getFirst());
                RouterServer router = RouterServer.start(through(gated))) {
            ManagedChannel ch = Clusters.channel(router.address());
            try {
                FloatMatrix x = Clusters.hidden(cfg, 8192, 5, DType.F32);
                MoeForwardRequest big = Clusters.request(1, x, DType.F32);
                LinkedBlockingQueue<Object> answers = new LinkedBlockingQueue<>();
                for (int i = 0; i < 96; i++) {
                    RouterGrpc.newStub(ch).withDeadlineAfter(5, TimeUnit.MINUTES).moeForward(big, new StreamObserver<>() {
                        @Override
                        public void onNext(MoeForwardResponse value) {
                            answers.add(value);
                        }

                        @Override
                        public void onError(Throwable t) {
                            answers.add(Status.fromThrowable(t));
                        }

                        @Override
                        public void onCompleted() {}
                    });
                }
                // 4 x 8192 tokens are admitted (the default: 4 x --max-tokens) and held at the worker; the other
                // 92 calls are refused while those are in flight
                gated.awaitHeld(RouterConfig.IN_FLIGHT_CALLS);
                for (int i = 0; i < 96 - RouterConfig.IN_FLIGHT_CALLS; i++) {
                    Object a = answers.poll(2, TimeUnit.MINUTES);
                    assertThat(a).isInstanceOfSatisfying(Status.class, s -> {
                        assertThat(s.getCode()).isEqualTo(Status.Code.RESOURCE_EXHAUSTED);
                        assertThat(s.getDescription()).contains("8192 more would pass its limit of 32768 (--max-inflight-tokens)");
                    });
                }
                gated.open();
                FloatMatrix expected = reference.forward(1, x).output();
                for (int i = 0; i < RouterConfig.IN_FLIGHT_CALLS; i++) {
                    Object a = answers.poll(2, TimeUnit.MINUTES);
                    assertThat(a).isInstanceOf(MoeForwardResponse.class);
                    assertThat(Clusters.relativeError(Clusters.output((MoeForwardResponse) a), expected)).isLessThan(1e-5);
                }
                // nothing stays admitted: a full-size call and a small one are served
                assertThat(Clusters.relativeError(Clusters.output(Clusters.stub(ch).moeForward(big)), expected)).isLessThan(1e-5);
                servesASmallCallCorrectly(ch);
            } finally {
                ch.shutdownNow();
            }
        }
    }

    @Test
    void callsTheClientAbandonedAreCountedAsCancelledNotOk() throws Exception {
        try (GatedWorker gated = new GatedWorker(cluster.placement().workers().getFirst());
                RouterServer router = RouterServer.start(through(gated).withMetricsPort(0))) {
            ManagedChannel ch = Clusters.channel(router.address());
            try {
                Context.CancellableContext call = Context.current().withCancellation();
                LinkedBlockingQueue<Status> outcome = new LinkedBlockingQueue<>();
                call.run(() -> RouterGrpc.newStub(ch).moeForward(Clusters.request(1, Clusters.hidden(cfg, 4, 3, DType.F32), DType.F32),
                        new StreamObserver<>() {
                            @Override
                            public void onNext(MoeForwardResponse value) {}

                            @Override
                            public void onError(Throwable t) {
                                outcome.add(Status.fromThrowable(t));
                            }

                            @Override
                            public void onCompleted() {
                                outcome.add(Status.OK);
                            }
                        }));
                gated.awaitHeld(1);
                call.cancel(null);
                assertThat(outcome.poll(30, TimeUnit.SECONDS).getCode()).isEqualTo(Status.Code.CANCELLED);
                gated.open(); // the router's handler now finishes the abandoned call
                // a Generate stream cancelled after its first token
                Context.CancellableContext stream = Context.current().withCancellation();
                Iterator<GenerateResponse> tokens = stream.call(() -> Clusters.stub(ch).generate(GenerateClusterTest.greedy(new int[] {1, 2}, 3000)));
                tokens.next();
                stream.cancel(null);
                long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
                double cancelled = 0;
                while (System.nanoTime() < deadline && (cancelled = requests(router, "CANCELLED")) < 2) {
                    Thread.sleep(50);
                }
                assertThat(cancelled).isEqualTo(2);
                assertThat(requests(router, "OK")).isZero();
                servesASmallCallCorrectly(ch);
                assertThat(requests(router, "OK")).isEqualTo(1);
            } finally {
                ch.shutdownNow();
            }
        }
    }

    /** moe_router_requests_total of MoeForward and Generate with {@code code}. */
    private static double requests(RouterServer router, String code) throws Exception {
        Exposition e = Exposition.scrape(router.metricsPort());
        return e.names().contains("moe_router_requests_total")
                ? e.sum("moe_router_requests_total", s -> s.labels().get("code").equals(code)) : 0;
    }

    /** moe_router_requests_total of gRPC calls to {@code method} that ended with {@code code}. */
    private static double requests(RouterServer router, String method, String code) throws Exception {
        Exposition e = Exposition.scrape(router.metricsPort());
        return e.names().contains("moe_router_requests_total") ? e.sum("moe_router_requests_total",
                s -> s.is("api", "grpc") && s.is("method", method) && s.is("code", code)) : 0;
    }

    @Test
    void theTokenLimitIsCheckedFromTheShapeBeforeTheDataIsDecoded() throws Exception {
        try (RouterServer router = RouterServer.start(RouterConfig.defaults(dir, cluster.placement()).withMaxTokensPerRequest(8)
                .withMetricsPort(0))) {
            ManagedChannel ch = Clusters.channel(router.address());
            try {
                Tensor nineTokens = Clusters.request(1, Clusters.hidden(cfg, 9, 4, DType.F32), DType.F32).getHiddenStates();
                // the data is short, which decoding would report; the shape alone is over the limit
                Tensor shortData = nineTokens.toBuilder().setData(nineTokens.getData().substring(0, 16)).build();
                Tensor hugeShape = nineTokens.toBuilder().setShape(0, 1L << 40).build();
                for (Tensor t : List.of(shortData, hugeShape)) {
                    assertThatThrownBy(() -> Clusters.stub(ch).moeForward(MoeForwardRequest.newBuilder().setLayer(1).setHiddenStates(t).build()))
                            .isInstanceOfSatisfying(StatusRuntimeException.class, e -> {
                                assertThat(e.getStatus().getCode()).isEqualTo(Status.Code.RESOURCE_EXHAUSTED);
                                assertThat(e.getStatus().getDescription()).contains("tokens; this router accepts at most 8 per call");
                            });
                }
                assertThat(requests(router, "MoeForward", "RESOURCE_EXHAUSTED")).isEqualTo(2);
                servesASmallCallCorrectly(ch);
            } finally {
                ch.shutdownNow();
            }
        }
    }

    @Test
    void finiteInputsWhoseOutputOverflowsGetInternalNotOk() throws Exception {
        ManagedChannel ch = Clusters.channel(cluster.router().address());
        try {
            FloatMatrix x = Clusters.hidden(cfg, 2, 9, DType.F32);
            // finite, and within range through the gate; the experts' products (~1e40) overflow f32
            java.util.Arrays.fill(x.data(), 1e20f);
            assertThatThrownBy(() -> Clusters.stub(ch).moeForward(Clusters.request(1, x, DType.F32)))
                    .isInstanceOfSatisfying(StatusRuntimeException.class, e -> {
                        assertThat(e.getStatus().getCode()).as(e.getStatus().getDescription()).isEqualTo(Status.Code.INTERNAL);
                        assertThat(e.getStatus().getDescription()).startsWith("MoeForward produced a non-finite value (NaN or infinity) at token 0");
                    });
            servesASmallCallCorrectly(ch);
        } finally {
            ch.shutdownNow();
        }
    }

    @Test
    void malformedMessagesAndHugeEchoesGetShortInvalidArgumentOrNotFound() throws Exception {
        ManagedChannel ch = Clusters.channel(cluster.router().address());
        try {
            RouterServer router = cluster.router();
            double moeForwardBefore = requests(router, "MoeForward", "INVALID_ARGUMENT");
            double generateBefore = requests(router, "Generate", "INVALID_ARGUMENT");
            assertThat(raw(ch, RouterGrpc.getMoeForwardMethod(), new byte[] {0x1a, 0x7f, 0x01})).isEqualTo(Status.Code.INVALID_ARGUMENT);
            // refused before the service saw it, and still counted with its code
            assertThat(requests(router, "MoeForward", "INVALID_ARGUMENT") - moeForwardBefore).isEqualTo(1);
            // text (field 2) that is not UTF-8
            assertThat(raw(ch, RouterGrpc.getGenerateMethod(), new byte[] {0x12, 0x02, (byte) 0xc3, 0x28})).isEqualTo(Status.Code.INVALID_ARGUMENT);
            assertThat(requests(router, "Generate", "INVALID_ARGUMENT") - generateBefore).isEqualTo(1);
            String model = "m".repeat(100_000);
            MoeForwardRequest wrongModel = Clusters.request(1, Clusters.hidden(cfg, 1, 1, DType.F32), DType.F32).toBuilder().setModel(model).build();
            assertThatThrownBy(() -> Clusters.stub(ch).moeForward(wrongModel))
                    .isInstanceOfSatisfying(StatusRuntimeException.class, e -> {
                        assertThat(e.getStatus().getCode()).isEqualTo(Status.Code.NOT_FOUND);
                        assertThat(e.getStatus().getDescription()).startsWith("model '" + "m".repeat(80) + "… (99920 more characters)'")
                                .hasSizeLessThan(250);
                    });
            GenerateRequest wrongModelText = GenerateClusterTest.greedy(new int[] {1}, 1).toBuilder().setModel(model).build();
            assertThatThrownBy(() -> GenerateClusterTest.collect(Clusters.stub(ch).generate(wrongModelText)))
                    .isInstanceOfSatisfying(StatusRuntimeException.class, e -> {
                        assertThat(e.getStatus().getCode()).isEqualTo(Status.Code.NOT_FOUND);
                        assertThat(e.getStatus().getDescription()).hasSizeLessThan(250);
                    });
            servesASmallCallCorrectly(ch);
        } finally {
            ch.shutdownNow();
        }
    }

    private static Status.Code raw(ManagedChannel ch, MethodDescriptor<?, ?> method, byte[] request) {
        MethodDescriptor<byte[], byte[]> bytes = MethodDescriptor.<byte[], byte[]>newBuilder()
                .setType(method.getType()).setFullMethodName(method.getFullMethodName())
                .setRequestMarshaller(BYTES).setResponseMarshaller(BYTES).build();
        try {
            List<byte[]> out = new ArrayList<>();
            ClientCalls.blockingServerStreamingCall(ch, bytes, CallOptions.DEFAULT.withDeadlineAfter(30, TimeUnit.SECONDS), request)
                    .forEachRemaining(out::add);
            return Status.Code.OK;
        } catch (StatusRuntimeException e) {
            assertThat(e.getStatus().getDescription()).startsWith("request to " + method.getFullMethodName() + " is not a valid message");
            return e.getStatus().getCode();
        }
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
}
