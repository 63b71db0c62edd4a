package dev.moecluster.control;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.grpc.ChannelCredentials;
import io.grpc.Grpc;
import io.grpc.ManagedChannel;
import io.grpc.Server;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.health.v1.HealthCheckRequest;
import io.grpc.health.v1.HealthCheckResponse.ServingStatus;
import io.grpc.health.v1.HealthGrpc;
import io.grpc.protobuf.services.HealthStatusManager;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.attribute.FileTime;
import java.time.Duration;
import java.time.Instant;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Certificates rotated on disk (as cert-manager and the kubelet do with a Secret) are used by new
 * connections without a restart, on both sides; a half-written file leaves the previous ones in use.
 * The files are looked at on every handshake here (a zero check interval) instead of every 10 s.
 * Host names are still checked through the reloading trust manager.
 */
class TlsRotationTest {
    @TempDir
    Path dir;

    private TestCertificates ca1;
    private TestCertificates ca2;
    private Path serverCert;
    private Path serverKey;
    private Path serverCa;
    private Server server;

    @BeforeEach
    void startServerWithCa1() throws Exception {
        ca1 = TestCertificates.newAuthority(dir.resolve("ca1"), "ca1");
        ca2 = TestCertificates.newAuthority(dir.resolve("ca2"), "ca2");
        serverCert = dir.resolve("tls.crt");
        serverKey = dir.resolve("tls.key");
        serverCa = dir.resolve("ca.crt");
        install(ca1.issue("server"), ca1.caFile());
        TlsConfig tls = TlsConfig.fromPemFiles(serverCert, serverKey, serverCa);
        HealthStatusManager health = new HealthStatusManager();
        server = Grpc.newServerBuilderForPort(0, tls.serverCredentials(Duration.ZERO))
                .addService(health.getHealthService()).build().start();
    }

    @AfterEach
    void stop() throws InterruptedException {
        server.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
    }

    @Test
    void aServerPicksUpANewCertificateAndCaForNewConnections() throws Exception {
        ChannelCredentials ca1Client = ca1.tls(ca1.issue("client")).channelCredentials(Duration.ZERO);
        assertThat(health(ca1Client)).isEqualTo(ServingStatus.SERVING);

        // half-written: the previous certificate stays in use
        rewrite(serverCert, "-----BEGIN CERTIFICATE-----\nMIIB");
        assertThat(health(ca1Client)).isEqualTo(ServingStatus.SERVING);

        // a certificate from another CA: clients that trust only the old CA no longer accept the server
        TestCertificates.Issued next = ca2.issue("server");
        install(next, ca1.caFile());
        assertRefused(ca1Client);
        TestCertificates.Issued ca1ClientCert = ca1.issue("client-2");
        ChannelCredentials trustsCa2 = TlsConfig.fromPemFiles(ca1ClientCert.cert(), ca1ClientCert.key(), ca2.caFile())
                .channelCredentials(Duration.ZERO);
        assertThat(health(trustsCa2)).isEqualTo(ServingStatus.SERVING);

        // the server's CA file rotates too: client certificates of the old CA are refused, the new CA's accepted
        install(next, ca2.caFile());
        assertRefused(trustsCa2);
        assertThat(health(ca2.tls(ca2.issue("client")).channelCredentials(Duration.ZERO))).isEqualTo(ServingStatus.SERVING);
    }

    @Test
    void aClientPicksUpANewCaFileWithTheSameCredentials() throws Exception {
        TestCertificates.Issued clientCert = ca1.issue("client");
        Path clientCa = dir.resolve("client-ca.crt");
        Files.copy(ca1.caFile(), clientCa);
        ChannelCredentials client = TlsConfig.fromPemFiles(clientCert.cert(), clientCert.key(), clientCa)
                .channelCredentials(Duration.ZERO);
        assertThat(health(client)).isEqualTo(ServingStatus.SERVING);

        install(ca2.issue("server"), ca1.caFile());
        assertRefused(client);
        copyNewer(ca2.caFile(), clientCa);
        assertThat(health(client)).as("the same credentials, a new CA file").isEqualTo(ServingStatus.SERVING);
    }

    @Test
    void hostNamesAreStillChecked() throws Exception {
        ChannelCredentials client = ca1.tls(ca1.issue("client")).channelCredentials(Duration.ZERO);
        assertThat(health("127.0.0.1", client)).isEqualTo(ServingStatus.SERVING);
        // the same server on another loopback address its certificate does not name
        assertThatThrownBy(() -> health("127.0.0.2", client)).isInstanceOfSatisfying(StatusRuntimeException.class,
                e -> assertThat(e.getStatus().getCode()).isEqualTo(Status.Code.UNAVAILABLE));
    }

    /** Puts the server's certificate, key and CA in place, as a Secret update would. */
    private void install(TestCertificates.Issued issued, Path ca) throws Exception {
        copyNewer(issued.cert(), serverCert);
        copyNewer(issued.key(), serverKey);
        copyNewer(ca, serverCa);
    }

    /** Copies and moves the modification time forward, so a change within the clock's resolution shows. */
    private static void copyNewer(Path from, Path to) throws Exception {
        Files.copy(from, to, StandardCopyOption.REPLACE_EXISTING);
        touch(to);
    }

    private static void rewrite(Path file, String content) throws Exception {
        Files.writeString(file, content);
        touch(file);
    }

    private static void touch(Path file) throws Exception {
        FileTime last = Files.getLastModifiedTime(file);
        Instant later = Instant.now().plusSeconds(1);
        Files.setLastModifiedTime(file, FileTime.from(later.isAfter(last.toInstant()) ? later : last.toInstant().plusSeconds(1)));
    }

    private ServingStatus health(ChannelCredentials credentials) throws InterruptedException {
        return health("localhost", credentials);
    }

    private ServingStatus health(String host, ChannelCredentials credentials) throws InterruptedException {
        ManagedChannel ch = Grpc.newChannelBuilderForAddress(host, server.getPort(), credentials).build();
        try {
            return HealthGrpc.newBlockingStub(ch).withDeadlineAfter(10, TimeUnit.SECONDS)
                    .check(HealthCheckRequest.getDefaultInstance()).getStatus();
        } finally {
            ch.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
        }
    }

    private void assertRefused(ChannelCredentials credentials) {
        assertThatThrownBy(() -> health(credentials)).isInstanceOfSatisfying(StatusRuntimeException.class,
                e -> assertThat(e.getStatus().getCode()).isEqualTo(Status.Code.UNAVAILABLE));
    }
}
