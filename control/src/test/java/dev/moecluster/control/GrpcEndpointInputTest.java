package dev.moecluster.control;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.grpc.CallOptions;
import io.grpc.ManagedChannel;
import io.grpc.MethodDescriptor;
import io.grpc.ServerServiceDefinition;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.health.v1.HealthCheckRequest;
import io.grpc.health.v1.HealthCheckResponse;
import io.grpc.health.v1.HealthCheckResponse.ServingStatus;
import io.grpc.health.v1.HealthGrpc;
import io.grpc.netty.shaded.io.grpc.netty.NettyChannelBuilder;
import io.grpc.stub.ClientCalls;
import io.grpc.stub.ServerCalls;
import io.grpc.stub.StreamObserver;
import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.logging.Handler;
import java.util.logging.Level;
import java.util.logging.LogRecord;
import java.util.logging.Logger;
import org.junit.jupiter.api.Test;

/** What a stray or careless client can send an endpoint: malformed messages, huge echoes, frequent pings. */
class GrpcEndpointInputTest {
    /** Raw bytes in and out, so a test can send what no generated stub would. */
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

    private static final MethodDescriptor<byte[], byte[]> RAW_HEALTH_CHECK = MethodDescriptor.<byte[], byte[]>newBuilder()
            .setType(MethodDescriptor.MethodType.UNARY)
            .setFullMethodName(HealthGrpc.getCheckMethod().getFullMethodName())
            .setRequestMarshaller(BYTES)
            .setResponseMarshaller(BYTES)
            .build();

    private static final MethodDescriptor<byte[], byte[]> ECHO = MethodDescriptor.<byte[], byte[]>newBuilder()
            .setType(MethodDescriptor.MethodType.UNARY)
            .setFullMethodName("test.Echo/Refuse")
            .setRequestMarshaller(BYTES)
            .setResponseMarshaller(BYTES)
            .build();

    /** Refuses every request with a status that quotes the whole request, as careless validation would. */
    private static ServerServiceDefinition echoingService() {
        return ServerServiceDefinition.builder("test.Echo")
                .addMethod(ECHO, ServerCalls.asyncUnaryCall((byte[] request, StreamObserver<byte[]> out) -> out.onError(
                        Status.INVALID_ARGUMENT.withDescription("bad request '" + new String(request) + "'").asRuntimeException())))
                .build();
    }

    private static ManagedChannel channel(GrpcEndpoint endpoint) {
        return NettyChannelBuilder.forAddress("127.0.0.1", endpoint.port()).usePlaintext().build();
    }

    private static Status.Code rawCheck(ManagedChannel ch, byte[] request) {
        try {
            ClientCalls.blockingUnaryCall(ch, RAW_HEALTH_CHECK, CallOptions.DEFAULT.withDeadlineAfter(10, TimeUnit.SECONDS), request);
            return Status.Code.OK;
        } catch (StatusRuntimeException e) {
            assertThat(e.getStatus().getDescription()).startsWith("request to grpc.health.v1.Health/Check is not a valid message");
            return e.getStatus().getCode();
        }
    }

    @Test
    void malformedProtobufAndInvalidUtf8AreInvalidArgumentWithoutSevereLogs() throws Exception {
        List<LogRecord> logged = new CopyOnWriteArrayList<>();
        Handler capture = new Handler() {
            @Override
            public void publish(LogRecord r) {
                if (r.getLevel().intValue() >= Level.WARNING.intValue()) {
                    logged.add(r);
                }
            }

            @Override
            public void flush() {}

            @Override
            public void close() {}
        };
        Logger root = Logger.getLogger("");
        root.addHandler(capture);
        try (GrpcEndpoint endpoint = GrpcEndpoint.start("127.0.0.1", 0, 1 << 20, List.of())) {
            ManagedChannel ch = channel(endpoint);
            try {
                byte[] truncated = {0x0a, 0x05, 'a'}; // field 1 says 5 bytes, 1 follows
                byte[] invalidUtf8 = {0x0a, 0x02, (byte) 0xc3, 0x28}; // field 1 (string service) is not UTF-8
                for (int i = 0; i < 20; i++) {
                    assertThat(rawCheck(ch, truncated)).isEqualTo(Status.Code.INVALID_ARGUMENT);
                    assertThat(rawCheck(ch, invalidUtf8)).isEqualTo(Status.Code.INVALID_ARGUMENT);
                }
                // a valid request on the same connection is answered
                HealthCheckResponse ok = HealthGrpc.newBlockingStub(ch).withDeadlineAfter(10, TimeUnit.SECONDS)
                        .check(HealthCheckRequest.newBuilder().setService(GrpcEndpoint.LIVENESS).build());
                assertThat(ok.getStatus()).isEqualTo(ServingStatus.SERVING);
            } finally {
                ch.shutdownNow();
            }
        } finally {
            root.removeHandler(capture);
        }
        assertThat(logged).extracting(LogRecord::getMessage).isEmpty();
    }

    @Test
    void statusMessagesAreBoundedWhateverTheServiceQuotes() throws Exception {
        try (GrpcEndpoint endpoint = GrpcEndpoint.start("127.0.0.1", 0, 16 << 20, List.of(echoingService()))) {
            ManagedChannel ch = channel(endpoint);
            try {
                byte[] huge = "x".repeat(2_000_000).getBytes();
                assertThatThrownBy(() -> ClientCalls.blockingUnaryCall(ch, ECHO, CallOptions.DEFAULT.withDeadlineAfter(10, TimeUnit.SECONDS), huge))
                        .isInstanceOfSatisfying(StatusRuntimeException.class, e -> {
                            assertThat(e.getStatus().getCode()).isEqualTo(Status.Code.INVALID_ARGUMENT);
                            assertThat(e.getStatus().getDescription()).startsWith("bad request 'xxx")
                                    .endsWith("(" + (2_000_014 - ErrorText.MAX_STATUS_LENGTH) + " more characters)")
                                    .hasSizeLessThanOrEqualTo(ErrorText.MAX_STATUS_LENGTH + 40);
                        });
            } finally {
                ch.shutdownNow();
            }
        }
    }

    @Test
    void clientsPingingEveryTenSecondsAreNotSentAway() throws Exception {
        try (GrpcEndpoint endpoint = GrpcEndpoint.start("127.0.0.1", 0, 1 << 20, List.of())) {
            // the router's worker channels ping every 30 s; 10 s is the least a Netty client sends
            ManagedChannel ch = NettyChannelBuilder.forAddress("127.0.0.1", endpoint.port()).usePlaintext()
                    .keepAliveTime(10, TimeUnit.SECONDS).build();
            LinkedBlockingQueue<Object> events = new LinkedBlockingQueue<>();
            try {
                HealthGrpc.newStub(ch).watch(HealthCheckRequest.newBuilder().setService(GrpcEndpoint.LIVENESS).build(),
                        new StreamObserver<>() {
                            @Override
                            public void onNext(HealthCheckResponse value) {
                                events.add(value.getStatus());
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
                assertThat(events.poll(10, TimeUnit.SECONDS)).isEqualTo(ServingStatus.SERVING);
                // a server permitting one ping in 5 min sends GOAWAY too_many_pings after the third, at ~30 s
                assertThat(events.poll(45, TimeUnit.SECONDS)).isNull();
            } finally {
                ch.shutdownNow();
            }
        }
    }
}
