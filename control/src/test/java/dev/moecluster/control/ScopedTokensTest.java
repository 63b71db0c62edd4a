package dev.moecluster.control;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.grpc.ManagedChannel;
import io.grpc.ServerInterceptors;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.health.v1.HealthCheckRequest;
import io.grpc.health.v1.HealthCheckResponse;
import io.grpc.health.v1.HealthGrpc;
import io.grpc.netty.shaded.io.grpc.netty.NettyChannelBuilder;
import io.grpc.protobuf.services.HealthStatusManager;
import java.util.Iterator;
import java.util.List;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;

/** Read and write tokens on a real gRPC server: Health/Check stands for a view, Health/Watch for an action. */
class ScopedTokensTest {
    private static final ScopedTokens TOKENS = new ScopedTokens(BearerToken.of("write-token"), BearerToken.of("read-token"));

    @Test
    void writeTokensCallEverythingReadTokensOnlyViewsOthersNothing() throws Exception {
        HealthStatusManager health = new HealthStatusManager();
        var guarded = ServerInterceptors.intercept(health.getHealthService(),
                TOKENS.serverInterceptor(Set.of(HealthGrpc.getCheckMethod().getFullMethodName())));
        try (GrpcEndpoint endpoint = GrpcEndpoint.start("127.0.0.1", 0, 1 << 20, List.of(guarded))) {
            ManagedChannel ch = NettyChannelBuilder.forAddress("127.0.0.1", endpoint.port()).usePlaintext().build();
            try {
                assertThat(check(ch, "write-token")).isEqualTo(HealthCheckResponse.ServingStatus.SERVING);
                assertThat(watch(ch, "write-token").hasNext()).isTrue();
                assertThat(check(ch, "read-token")).isEqualTo(HealthCheckResponse.ServingStatus.SERVING);
                assertThatThrownBy(() -> watch(ch, "read-token").hasNext())
                        .isInstanceOfSatisfying(StatusRuntimeException.class, e -> {
                            assertThat(e.getStatus().getCode()).isEqualTo(Status.Code.PERMISSION_DENIED);
                            assertThat(e.getStatus().getDescription()).contains("grpc.health.v1.Health/Watch", "write token");
                        });
                assertThatThrownBy(() -> check(ch, null)).isInstanceOfSatisfying(StatusRuntimeException.class, e ->
                        assertThat(e.getStatus()).extracting(Status::getCode, Status::getDescription)
                                .containsExactly(Status.Code.UNAUTHENTICATED, "missing bearer token"));
                assertThatThrownBy(() -> check(ch, "guessed")).isInstanceOfSatisfying(StatusRuntimeException.class, e ->
                        assertThat(e.getStatus()).extracting(Status::getCode, Status::getDescription)
                                .containsExactly(Status.Code.UNAUTHENTICATED, "invalid bearer token"));
                assertThatThrownBy(() -> watch(ch, "guessed").hasNext()).isInstanceOfSatisfying(StatusRuntimeException.class, e ->
                        assertThat(e.getStatus().getCode()).isEqualTo(Status.Code.UNAUTHENTICATED));
            } finally {
                ch.shutdownNow();
            }
        }
    }

    @Test
    void aReadTokenAloneIsRefusedAndNothingIsPrinted() {
        assertThatThrownBy(() -> new ScopedTokens(null, BearerToken.of("read-token")))
                .hasMessageContaining("write is null");
        assertThat(TOKENS.toString()).doesNotContain("token-");
    }

    private static HealthGrpc.HealthBlockingStub stub(ManagedChannel ch, String token) {
        var stub = HealthGrpc.newBlockingStub(ch).withDeadlineAfter(10, TimeUnit.SECONDS);
        return token == null ? stub : stub.withCallCredentials(BearerToken.of(token).callCredentials());
    }

    private static HealthCheckResponse.ServingStatus check(ManagedChannel ch, String token) {
        return stub(ch, token).check(HealthCheckRequest.getDefaultInstance()).getStatus();
    }

    private static Iterator<HealthCheckResponse> watch(ManagedChannel ch, String token) {
        return stub(ch, token).watch(HealthCheckRequest.getDefaultInstance());
    }
}
