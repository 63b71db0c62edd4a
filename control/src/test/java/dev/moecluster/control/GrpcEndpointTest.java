package dev.moecluster.control;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.grpc.ManagedChannel;
import io.grpc.ServerServiceDefinition;
import io.grpc.StatusRuntimeException;
import io.grpc.health.v1.HealthCheckRequest;
import io.grpc.health.v1.HealthCheckResponse.ServingStatus;
import io.grpc.health.v1.HealthGrpc;
import io.grpc.netty.shaded.io.grpc.netty.NettyChannelBuilder;
import io.grpc.reflection.v1.ServerReflectionGrpc;
import io.grpc.reflection.v1.ServerReflectionRequest;
import io.grpc.reflection.v1.ServerReflectionResponse;
import io.grpc.stub.StreamObserver;
import java.util.List;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;

class GrpcEndpointTest {
    @Test
    void reportsServingForTheServerAndItsServicesAndAnswersReflection() throws Exception {
        try (GrpcEndpoint endpoint = GrpcEndpoint.start("127.0.0.1", 0, 1 << 20, List.of(reflectionProbe()))) {
            endpoint.ready(true);
            ManagedChannel ch = NettyChannelBuilder.forAddress("127.0.0.1", endpoint.port()).usePlaintext().build();
            try {
                var health = HealthGrpc.newBlockingStub(ch).withDeadlineAfter(10, TimeUnit.SECONDS);
                assertThat(health.check(HealthCheckRequest.getDefaultInstance()).getStatus()).isEqualTo(ServingStatus.SERVING);
                assertThat(health.check(HealthCheckRequest.newBuilder().setService("test.Probe").build()).getStatus())
                        .isEqualTo(ServingStatus.SERVING);
                LinkedBlockingQueue<ServerReflectionResponse> answers = new LinkedBlockingQueue<>();
                StreamObserver<ServerReflectionRequest> req = ServerReflectionGrpc.newStub(ch).serverReflectionInfo(new StreamObserver<>() {
                    @Override
                    public void onNext(ServerReflectionResponse value) {
                        answers.add(value);
                    }

                    @Override
                    public void onError(Throwable t) {}

                    @Override
                    public void onCompleted() {}
                });
                req.onNext(ServerReflectionRequest.newBuilder().setListServices("").build());
                var services = answers.poll(10, TimeUnit.SECONDS).getListServicesResponse().getServiceList().stream()
                        .map(s -> s.getName()).toList();
                assertThat(services).contains("grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection");
                req.onCompleted();
            } finally {
                ch.shutdownNow();
            }
        }
    }

    /** Older tools (grpcurl before 1.8.8, Postman, grpc_cli) speak only v1alpha reflection. */
    @Test
    @SuppressWarnings("deprecation")
    void answersV1AlphaReflectionForOlderTools() throws Exception {
        try (GrpcEndpoint endpoint = GrpcEndpoint.start("127.0.0.1", 0, 1 << 20, List.of(reflectionProbe()))) {
            ManagedChannel ch = NettyChannelBuilder.forAddress("127.0.0.1", endpoint.port()).usePlaintext().build();
            try {
                LinkedBlockingQueue<io.grpc.reflection.v1alpha.ServerReflectionResponse> answers = new LinkedBlockingQueue<>();
                var req = io.grpc.reflection.v1alpha.ServerReflectionGrpc.newStub(ch).withDeadlineAfter(10, TimeUnit.SECONDS)
                        .serverReflectionInfo(new StreamObserver<>() {
                            @Override
                            public void onNext(io.grpc.reflection.v1alpha.ServerReflectionResponse value) {
                                answers.add(value);
                            }

                            @Override
                            public void onError(Throwable t) {}

                            @Override
                            public void onCompleted() {}
                        });
                req.onNext(io.grpc.reflection.v1alpha.ServerReflectionRequest.newBuilder().setListServices("").build());
                var answer = answers.poll(10, TimeUnit.SECONDS);
                assertThat(answer).as("a v1alpha answer").isNotNull();
                assertThat(answer.getListServicesResponse().getServiceList().stream().map(s -> s.getName()).toList())
                        .contains("grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection",
                                "grpc.reflection.v1alpha.ServerReflection");
                req.onCompleted();
            } finally {
                ch.shutdownNow();
            }
        }
    }

    @Test
    void readinessStartsNotServingAndFollowsReadyWhileLivenessStaysServing() throws Exception {
        GrpcEndpoint endpoint = GrpcEndpoint.start("127.0.0.1", 0, 1 << 20, List.of(reflectionProbe()));
        ManagedChannel ch = NettyChannelBuilder.forAddress("127.0.0.1", endpoint.port()).usePlaintext().build();
        try {
            assertThat(status(ch, GrpcEndpoint.READINESS)).isEqualTo(ServingStatus.NOT_SERVING);
            assertThat(status(ch, GrpcEndpoint.LIVENESS)).isEqualTo(ServingStatus.SERVING);
            assertThat(status(ch, "test.Probe")).isEqualTo(ServingStatus.SERVING);
            endpoint.ready(true);
            assertThat(status(ch, GrpcEndpoint.READINESS)).isEqualTo(ServingStatus.SERVING);
            endpoint.ready(false);
            assertThat(status(ch, GrpcEndpoint.READINESS)).isEqualTo(ServingStatus.NOT_SERVING);
            assertThat(status(ch, GrpcEndpoint.LIVENESS)).isEqualTo(ServingStatus.SERVING);
            endpoint.ready(true);
            endpoint.close();
            endpoint.ready(true); // ignored once stopped
        } finally {
            endpoint.kill();
            ch.shutdownNow();
        }
    }

    private static ServingStatus status(ManagedChannel ch, String service) {
        return HealthGrpc.newBlockingStub(ch).withDeadlineAfter(10, TimeUnit.SECONDS)
                .check(HealthCheckRequest.newBuilder().setService(service).build()).getStatus();
    }

    @Test
    void closeAndKillCanBothBeCalledAndStopServing() throws Exception {
        GrpcEndpoint endpoint = GrpcEndpoint.start("127.0.0.1", 0, 1 << 20, List.of(reflectionProbe()));
        int port = endpoint.port();
        endpoint.kill();
        endpoint.close();
        endpoint.kill();
        ManagedChannel ch = NettyChannelBuilder.forAddress("127.0.0.1", port).usePlaintext().build();
        try {
            assertThatThrownBy(() -> HealthGrpc.newBlockingStub(ch).withDeadlineAfter(5, TimeUnit.SECONDS)
                    .check(HealthCheckRequest.getDefaultInstance())).isInstanceOf(StatusRuntimeException.class);
        } finally {
            ch.shutdownNow();
        }
    }

    /** A service named test.Probe with no methods, so health reports it by name. */
    private static ServerServiceDefinition reflectionProbe() {
        return ServerServiceDefinition.builder("test.Probe").build();
    }

    @Test
    void aTakenPortIsReportedWithItsAddressAndTheFlagToChange() throws Exception {
        try (java.net.ServerSocket taken = new java.net.ServerSocket(0, 1, java.net.InetAddress.getByName("127.0.0.1"))) {
            int port = taken.getLocalPort();
            assertThatThrownBy(() -> GrpcEndpoint.start("127.0.0.1", port, 1 << 20, List.of()))
                    .isInstanceOf(java.io.IOException.class)
                    .hasMessageContaining("cannot serve gRPC on 127.0.0.1:" + port)
                    .hasMessageContaining("Address already in use")
                    .hasMessageContaining("--port");
            assertThatThrownBy(() -> MetricsEndpoint.start("router", "127.0.0.1", port))
                    .isInstanceOf(java.io.IOException.class)
                    .hasMessageContaining("cannot serve router metrics on 127.0.0.1:" + port)
                    .hasMessageContaining("--metrics-port");
        }
    }
}
