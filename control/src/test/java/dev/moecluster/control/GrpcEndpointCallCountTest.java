package dev.moecluster.control;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.grpc.CallOptions;
import io.grpc.Context;
import io.grpc.ManagedChannel;
import io.grpc.MethodDescriptor;
import io.grpc.ServerServiceDefinition;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.health.v1.HealthCheckRequest;
import io.grpc.health.v1.HealthCheckResponse;
import io.grpc.health.v1.HealthGrpc;
import io.grpc.netty.shaded.io.grpc.netty.NettyChannelBuilder;
import io.grpc.protobuf.ProtoUtils;
import io.grpc.stub.ClientCalls;
import io.grpc.stub.ServerCalls;
import io.grpc.stub.StreamObserver;
import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.Test;

/**
 * Every call to a component's services is counted once with the code it ended with: answered, refused as
 * malformed or too large before any handler ran, or abandoned by its client while the handler still worked.
 */
class GrpcEndpointCallCountTest {
    private static final int MAX_MESSAGE_BYTES = 64 * 1024;

    /** Raw bytes, so a test can send what no generated stub would. */
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

    /** A protobuf method of the component: answers SERVING at once, or NOT_FOUND for the service name "missing". */
    private static final MethodDescriptor<HealthCheckRequest, HealthCheckResponse> CHECK = method("Check");
    /** A protobuf method whose handler holds every call until the test answers it. */
    private static final MethodDescriptor<HealthCheckRequest, HealthCheckResponse> HOLD = method("Hold");

    private static MethodDescriptor<HealthCheckRequest, HealthCheckResponse> method(String name) {
        return MethodDescriptor.<HealthCheckRequest, HealthCheckResponse>newBuilder()
                .setType(MethodDescriptor.MethodType.UNARY)
                .setFullMethodName(MethodDescriptor.generateFullMethodName("test.Probe", name))
                .setRequestMarshaller(ProtoUtils.marshaller(HealthCheckRequest.getDefaultInstance()))
                .setResponseMarshaller(ProtoUtils.marshaller(HealthCheckResponse.getDefaultInstance()))
                .build();
    }

    private static MethodDescriptor<byte[], byte[]> raw(MethodDescriptor<?, ?> method) {
        return MethodDescriptor.<byte[], byte[]>newBuilder().setType(method.getType())
                .setFullMethodName(method.getFullMethodName()).setRequestMarshaller(BYTES).setResponseMarshaller(BYTES).build();
    }

    private final Map<String, AtomicInteger> counted = new ConcurrentHashMap<>();
    private final LinkedBlockingQueue<StreamObserver<HealthCheckResponse>> held = new LinkedBlockingQueue<>();

    private ServerServiceDefinition probe() {
        return ServerServiceDefinition.builder("test.Probe")
                .addMethod(CHECK, ServerCalls.asyncUnaryCall((HealthCheckRequest request, StreamObserver<HealthCheckResponse> out) -> {
                    if (request.getService().equals("missing")) {
                        out.onError(Status.NOT_FOUND.withDescription("no such service").asRuntimeException());
                        return;
                    }
                    out.onNext(HealthCheckResponse.newBuilder().setStatus(HealthCheckResponse.ServingStatus.SERVING).build());
                    out.onCompleted();
                }))
                .addMethod(HOLD, ServerCalls.asyncUnaryCall((HealthCheckRequest request, StreamObserver<HealthCheckResponse> out) -> held.add(out)))
                .build();
    }

    private GrpcEndpoint start() throws IOException {
        return GrpcEndpoint.start("127.0.0.1", 0, MAX_MESSAGE_BYTES, List.of(probe()), null, GrpcEndpoint.NO_HEALTH_PORT,
                (method, code) -> counted.computeIfAbsent(method + " " + code, k -> new AtomicInteger()).incrementAndGet());
    }

    private int count(String method, Status.Code code) {
        AtomicInteger n = counted.get(method + " " + code);
        return n == null ? 0 : n.get();
    }

    private int total() {
        return counted.values().stream().mapToInt(AtomicInteger::get).sum();
    }

    /** Waits for a count the transport reports after the client already saw its call end, then returns it. */
    private int awaitCount(String method, Status.Code code, int atLeast) throws InterruptedException {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
        while (count(method, code) < atLeast && System.nanoTime() < deadline) {
            Thread.sleep(20);
        }
        return count(method, code);
    }

    private static Status.Code call(ManagedChannel ch, MethodDescriptor<byte[], byte[]> method, byte[] request) {
        try {
            ClientCalls.blockingUnaryCall(ch, method, CallOptions.DEFAULT.withDeadlineAfter(30, TimeUnit.SECONDS), request);
            return Status.Code.OK;
        } catch (StatusRuntimeException e) {
            return e.getStatus().getCode();
        }
    }

    private static HealthCheckResponse check(ManagedChannel ch, String service) {
        return ClientCalls.blockingUnaryCall(ch, CHECK, CallOptions.DEFAULT.withDeadlineAfter(30, TimeUnit.SECONDS),
                HealthCheckRequest.newBuilder().setService(service).build());
    }

    private static ManagedChannel channel(GrpcEndpoint endpoint) {
        return NettyChannelBuilder.forAddress("127.0.0.1", endpoint.port()).usePlaintext().build();
    }

    @Test
    void malformedAndOversizedRequestsAreCountedWithTheirCodeAndTheEndpointKeepsServing() throws Exception {
        try (GrpcEndpoint endpoint = start()) {
            ManagedChannel ch = channel(endpoint);
            try {
                assertThat(check(ch, "x").getStatus()).isEqualTo(HealthCheckResponse.ServingStatus.SERVING);
                assertThatThrownBy(() -> check(ch, "missing")).isInstanceOfSatisfying(StatusRuntimeException.class,
                        e -> assertThat(e.getStatus().getCode()).isEqualTo(Status.Code.NOT_FOUND));
                assertThat(count("Check", Status.Code.OK)).isEqualTo(1);
                assertThat(count("Check", Status.Code.NOT_FOUND)).isEqualTo(1);

                byte[] truncated = {0x0a, 0x05, 'a'}; // field 1 says 5 bytes, 1 follows
                assertThat(call(ch, raw(CHECK), truncated)).isEqualTo(Status.Code.INVALID_ARGUMENT);
                assertThat(count("Check", Status.Code.INVALID_ARGUMENT)).isEqualTo(1);
                byte[] invalidUtf8 = {0x0a, 0x02, (byte) 0xc3, 0x28}; // field 1 (a string) is not UTF-8
                assertThat(call(ch, raw(CHECK), invalidUtf8)).isEqualTo(Status.Code.INVALID_ARGUMENT);
                assertThat(count("Check", Status.Code.INVALID_ARGUMENT)).isEqualTo(2);

                // refused by the transport before any handler or guard sees it
                assertThat(call(ch, raw(CHECK), new byte[MAX_MESSAGE_BYTES + 1])).isEqualTo(Status.Code.RESOURCE_EXHAUSTED);
                assertThat(awaitCount("Check", Status.Code.RESOURCE_EXHAUSTED, 1)).isEqualTo(1);

                // calls to gRPC's own services and to methods that do not exist are not the component's
                assertThat(HealthGrpc.newBlockingStub(ch).withDeadlineAfter(30, TimeUnit.SECONDS)
                        .check(HealthCheckRequest.newBuilder().setService(GrpcEndpoint.LIVENESS).build()).getStatus())
                        .isEqualTo(HealthCheckResponse.ServingStatus.SERVING);
                MethodDescriptor<byte[], byte[]> unknown = raw(CHECK).toBuilder().setFullMethodName("test.Probe/Nothing").build();
                assertThat(call(ch, unknown, new byte[0])).isEqualTo(Status.Code.UNIMPLEMENTED);

                // still serving; each call above counted once
                assertThat(check(ch, "y").getStatus()).isEqualTo(HealthCheckResponse.ServingStatus.SERVING);
                assertThat(count("Check", Status.Code.OK)).isEqualTo(2);
                assertThat(total()).isEqualTo(6);
            } finally {
                ch.shutdownNow();
            }
        }
    }

    @Test
    void callsTheClientAbandonedAreCountedAsCancelledOrDeadlineExceededWhateverTheHandlerAnswersLater() throws Exception {
        try (GrpcEndpoint endpoint = start()) {
            ManagedChannel ch = channel(endpoint);
            try {
                HealthCheckRequest request = HealthCheckRequest.getDefaultInstance();
                Context.CancellableContext cancelled = Context.current().withCancellation();
                LinkedBlockingQueue<Status> outcome = new LinkedBlockingQueue<>();
                cancelled.run(() -> ClientCalls.asyncUnaryCall(ch.newCall(HOLD, CallOptions.DEFAULT), request, observer(outcome)));
                StreamObserver<HealthCheckResponse> first = held.poll(30, TimeUnit.SECONDS);
                assertThat(first).isNotNull();
                cancelled.cancel(null);
                assertThat(outcome.poll(30, TimeUnit.SECONDS).getCode()).isEqualTo(Status.Code.CANCELLED);
                assertThat(awaitCount("Hold", Status.Code.CANCELLED, 1)).isEqualTo(1);
                answer(first); // the handler answers the abandoned call after all

                ClientCalls.asyncUnaryCall(ch.newCall(HOLD, CallOptions.DEFAULT.withDeadlineAfter(300, TimeUnit.MILLISECONDS)),
                        request, observer(outcome));
                StreamObserver<HealthCheckResponse> second = held.poll(30, TimeUnit.SECONDS);
                assertThat(second).isNotNull();
                assertThat(outcome.poll(30, TimeUnit.SECONDS).getCode()).isEqualTo(Status.Code.DEADLINE_EXCEEDED);
                // client and server both see the deadline: whichever acts first, the call is counted as given up on
                long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
                while (count("Hold", Status.Code.DEADLINE_EXCEEDED) + count("Hold", Status.Code.CANCELLED) < 2
                        && System.nanoTime() < deadline) {
                    Thread.sleep(20);
                }
                answer(second);

                ClientCalls.asyncUnaryCall(ch.newCall(HOLD, CallOptions.DEFAULT), request, observer(outcome));
                StreamObserver<HealthCheckResponse> third = held.poll(30, TimeUnit.SECONDS);
                answer(third);
                assertThat(outcome.poll(30, TimeUnit.SECONDS).getCode()).isEqualTo(Status.Code.OK);

                assertThat(count("Hold", Status.Code.OK)).isEqualTo(1);
                assertThat(count("Hold", Status.Code.DEADLINE_EXCEEDED) + count("Hold", Status.Code.CANCELLED)).isEqualTo(2);
                assertThat(total()).isEqualTo(3);
            } finally {
                ch.shutdownNow();
            }
        }
    }

    /** Answers a held call with SERVING; on a call already abandoned gRPC may refuse, which is the point. */
    private static void answer(StreamObserver<HealthCheckResponse> call) {
        try {
            call.onNext(HealthCheckResponse.newBuilder().setStatus(HealthCheckResponse.ServingStatus.SERVING).build());
            call.onCompleted();
        } catch (StatusRuntimeException e) {
            assertThat(e.getStatus().getCode()).isEqualTo(Status.Code.CANCELLED);
        }
    }

    private static StreamObserver<HealthCheckResponse> observer(LinkedBlockingQueue<Status> outcome) {
        return new StreamObserver<>() {
            @Override
            public void onNext(HealthCheckResponse value) {}

            @Override
            public void onError(Throwable t) {
                outcome.add(Status.fromThrowable(t));
            }

            @Override
            public void onCompleted() {
                outcome.add(Status.OK);
            }
        };
    }
}
