package dev.moecluster.control;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.grpc.ChannelCredentials;
import io.grpc.ManagedChannel;
import io.grpc.ServerServiceDefinition;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.health.v1.HealthCheckRequest;
import io.grpc.health.v1.HealthCheckResponse.ServingStatus;
import io.grpc.health.v1.HealthGrpc;
import io.grpc.InsecureChannelCredentials;
import io.grpc.netty.shaded.io.grpc.netty.NettyChannelBuilder;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** GrpcEndpoint with mutual TLS on its port and a plaintext health-only port, over loopback. */
class GrpcEndpointTlsTest {
    @TempDir
    Path dir;

    @Test
    void mutualTlsAdmitsOnlyClientsWithACertificateFromTheCa() throws Exception {
        TestCertificates ca = TestCertificates.newAuthority(dir.resolve("ca"), "ca");
        TestCertificates other = TestCertificates.newAuthority(dir.resolve("other"), "other");
        TlsConfig serverTls = ca.tls(ca.issue("server"));
        try (GrpcEndpoint endpoint = GrpcEndpoint.start("127.0.0.1", 0, 1 << 20, List.of(probe()), serverTls,
                GrpcEndpoint.NO_HEALTH_PORT)) {
            assertThat(endpoint.healthPort()).isEqualTo(GrpcEndpoint.NO_HEALTH_PORT);
            endpoint.ready(true);
            assertThat(health(endpoint.port(), ca.tls(ca.issue("client")).channelCredentials())).isEqualTo(ServingStatus.SERVING);
            // trusts the server but presents no certificate
            assertRefused(endpoint.port(), TlsConfig.fromPemFiles(null, null, ca.caFile()).channelCredentials());
            // a certificate from another CA
            TestCertificates.Issued stranger = other.issue("client");
            assertRefused(endpoint.port(), TlsConfig.fromPemFiles(stranger.cert(), stranger.key(), ca.caFile()).channelCredentials());
            assertRefused(endpoint.port(), InsecureChannelCredentials.create());
        }
    }

    @Test
    void clientRefusesAServerItsCaDidNotSign() throws Exception {
        TestCertificates ca = TestCertificates.newAuthority(dir.resolve("ca"), "ca");
        TestCertificates other = TestCertificates.newAuthority(dir.resolve("other"), "other");
        try (GrpcEndpoint endpoint = GrpcEndpoint.start("127.0.0.1", 0, 1 << 20, List.of(probe()),
                other.tls(other.issue("server")), GrpcEndpoint.NO_HEALTH_PORT)) {
            assertRefused(endpoint.port(), ca.tls(ca.issue("client")).channelCredentials());
        }
    }

    @Test
    void healthPortAnswersPlaintextWithTheSameStatusesWhileTheMainPortRequiresTls() throws Exception {
        TestCertificates ca = TestCertificates.newAuthority(dir, "ca");
        GrpcEndpoint endpoint = GrpcEndpoint.start("127.0.0.1", 0, 1 << 20, List.of(probe()), ca.tls(ca.issue("server")), 0);
        int healthPort = endpoint.healthPort();
        try {
            assertThat(endpoint.healthPort()).isPositive().isNotEqualTo(endpoint.port());
            ManagedChannel ch = NettyChannelBuilder.forAddress("127.0.0.1", endpoint.healthPort()).usePlaintext().build();
            try {
                var health = HealthGrpc.newBlockingStub(ch).withDeadlineAfter(10, TimeUnit.SECONDS);
                // readiness follows the main port's: not ready until the component says so
                assertThat(health.check(HealthCheckRequest.getDefaultInstance()).getStatus()).isEqualTo(ServingStatus.NOT_SERVING);
                assertThat(health.check(HealthCheckRequest.newBuilder().setService(GrpcEndpoint.LIVENESS).build()).getStatus())
                        .isEqualTo(ServingStatus.SERVING);
                endpoint.ready(true);
                assertThat(health.check(HealthCheckRequest.getDefaultInstance()).getStatus()).isEqualTo(ServingStatus.SERVING);
                assertThat(health.check(HealthCheckRequest.newBuilder().setService("test.Probe").build()).getStatus())
                        .isEqualTo(ServingStatus.SERVING);
                // the health port serves health only
                assertThatThrownBy(() -> io.grpc.reflection.v1.ServerReflectionGrpc.newBlockingV2Stub(ch)
                        .withDeadlineAfter(10, TimeUnit.SECONDS).serverReflectionInfo().read())
                        .satisfies(e -> assertThat(Status.fromThrowable(e).getCode()).isEqualTo(Status.Code.UNIMPLEMENTED));
            } finally {
                ch.shutdownNow();
            }
            assertRefused(endpoint.port(), InsecureChannelCredentials.create());
        } finally {
            endpoint.close();
        }
        // close stops the health port too
        ManagedChannel ch = NettyChannelBuilder.forAddress("127.0.0.1", healthPort).usePlaintext().build();
        try {
            assertThatThrownBy(() -> HealthGrpc.newBlockingStub(ch).withDeadlineAfter(5, TimeUnit.SECONDS)
                    .check(HealthCheckRequest.getDefaultInstance())).isInstanceOf(StatusRuntimeException.class);
        } finally {
            ch.shutdownNow();
        }
    }

    @Test
    void healthPortIsValidated() {
        assertThatThrownBy(() -> GrpcEndpoint.start("127.0.0.1", 0, 1 << 20, List.of(probe()), null, -2))
                .hasMessage("health port must be -1 (none), 0 (free port) or 1..65535, got -2");
    }

    private static ServingStatus health(int port, ChannelCredentials credentials) throws InterruptedException {
        ManagedChannel ch = NettyChannelBuilder.forAddress("127.0.0.1", port, credentials).build();
        try {
            return HealthGrpc.newBlockingStub(ch).withDeadlineAfter(10, TimeUnit.SECONDS)
                    .check(HealthCheckRequest.getDefaultInstance()).getStatus();
        } finally {
            ch.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
        }
    }

    private static void assertRefused(int port, ChannelCredentials credentials) {
        assertThatThrownBy(() -> health(port, credentials))
                .isInstanceOfSatisfying(StatusRuntimeException.class,
                        e -> assertThat(e.getStatus().getCode()).isEqualTo(Status.Code.UNAVAILABLE));
    }

    /** A service named test.Probe with no methods, so health reports it by name. */
    private static ServerServiceDefinition probe() {
        return ServerServiceDefinition.builder("test.Probe").build();
    }
}
