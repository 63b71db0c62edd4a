package dev.moecluster.control;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.grpc.ChannelCredentials;
import io.grpc.InsecureChannelCredentials;
import io.grpc.ManagedChannel;
import io.grpc.ServerInterceptors;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.health.v1.HealthCheckRequest;
import io.grpc.health.v1.HealthCheckResponse.ServingStatus;
import io.grpc.health.v1.HealthGrpc;
import io.grpc.netty.shaded.io.grpc.netty.NettyChannelBuilder;
import io.grpc.protobuf.services.HealthStatusManager;
import java.nio.file.Path;
import java.util.List;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Only routers on the data plane: the internal token over plaintext, the certificate allow-list under mutual TLS. */
class DataPlaneAccessTest {
    @TempDir
    Path dir;

    @Test
    void withATokenOnlyCallersThatSendItGetThrough() throws Exception {
        DataPlaneAccess access = new DataPlaneAccess(BearerToken.of("internal-secret"), Set.of());
        try (GrpcEndpoint worker = guarded(access, null)) {
            assertThat(check(worker, access.channelCredentials(InsecureChannelCredentials.create())))
                    .isEqualTo(ServingStatus.SERVING);
            assertRefused(worker, InsecureChannelCredentials.create(), Status.Code.UNAUTHENTICATED,
                    "missing data-plane token: only routers may call workers");
            assertRefused(worker, new DataPlaneAccess(BearerToken.of("guess"), Set.of())
                    .channelCredentials(InsecureChannelCredentials.create()), Status.Code.UNAUTHENTICATED, "invalid data-plane token");
        }
    }

    @Test
    void underMutualTlsOnlyAllowedRouterCertificatesGetThrough() throws Exception {
        TestCertificates ca = TestCertificates.newAuthority(dir.resolve("ca"), "ca");
        DataPlaneAccess access = new DataPlaneAccess(null, Set.of("router"));
        try (GrpcEndpoint worker = guarded(access, ca.tls(ca.issue("worker")))) {
            assertThat(check(worker, ca.tls(ca.issue("router")).channelCredentials())).isEqualTo(ServingStatus.SERVING);
            // the public API's client certificate comes from the same CA and passes the handshake, not the list
            assertRefused(worker, ca.tls(ca.issue("client")).channelCredentials(), Status.Code.PERMISSION_DENIED,
                    "client certificate CN=client is not an allowed router (--allowed-clients)");
        }
        // a subject alternative name counts too (every test certificate names 127.0.0.1)
        try (GrpcEndpoint worker = guarded(new DataPlaneAccess(null, Set.of("127.0.0.1")), ca.tls(ca.issue("worker")))) {
            assertThat(check(worker, ca.tls(ca.issue("anyone")).channelCredentials())).isEqualTo(ServingStatus.SERVING);
        }
        // an allow-list on a plaintext port admits no one
        try (GrpcEndpoint worker = guarded(access, null)) {
            assertRefused(worker, InsecureChannelCredentials.create(), Status.Code.UNAUTHENTICATED,
                    "the data plane requires a router's client certificate");
        }
    }

    @Test
    void openAccessAddsNothingAndBlankNamesAreRefused() {
        assertThat(DataPlaneAccess.OPEN.open()).isTrue();
        ChannelCredentials plain = InsecureChannelCredentials.create();
        assertThat(DataPlaneAccess.OPEN.channelCredentials(plain)).isSameAs(plain);
        assertThat(DataPlaneAccess.OPEN.callCredentials()).isNull();
        assertThatThrownBy(() -> new DataPlaneAccess(null, Set.of(" "))).hasMessage("an allowed client name is blank");
        assertThat(new DataPlaneAccess(BearerToken.of("internal-secret"), Set.of()).toString()).doesNotContain("secret");
    }

    /** A stand-in worker: gRPC health behind the interceptor, on loopback. */
    private static GrpcEndpoint guarded(DataPlaneAccess access, TlsConfig tls) throws Exception {
        var service = ServerInterceptors.intercept(new HealthStatusManager().getHealthService(), access.serverInterceptor());
        return GrpcEndpoint.start("127.0.0.1", 0, 1 << 20, List.of(service), tls, GrpcEndpoint.NO_HEALTH_PORT);
    }

    private static ServingStatus check(GrpcEndpoint worker, ChannelCredentials credentials) {
        ManagedChannel ch = NettyChannelBuilder.forAddress("127.0.0.1", worker.port(), credentials).overrideAuthority("localhost").build();
        try {
            return HealthGrpc.newBlockingStub(ch).withDeadlineAfter(10, TimeUnit.SECONDS)
                    .check(HealthCheckRequest.getDefaultInstance()).getStatus();
        } finally {
            ch.shutdownNow();
        }
    }

    private static void assertRefused(GrpcEndpoint worker, ChannelCredentials credentials, Status.Code code, String message) {
        assertThatThrownBy(() -> check(worker, credentials)).isInstanceOfSatisfying(StatusRuntimeException.class, e ->
                assertThat(e.getStatus()).extracting(Status::getCode, Status::getDescription).containsExactly(code, message));
    }
}
