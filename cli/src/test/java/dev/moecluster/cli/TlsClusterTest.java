package dev.moecluster.cli;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.moecluster.control.BearerToken;
import dev.moecluster.control.TestCertificates;
import dev.moecluster.control.TlsConfig;
import dev.moecluster.coordinator.CoordinatorConfig;
import dev.moecluster.coordinator.CoordinatorServer;
import dev.moecluster.core.model.Architecture;
import dev.moecluster.core.model.ModelConfig;
import dev.moecluster.core.moe.ReferenceMoeBlock;
import dev.moecluster.core.placement.ExpertAssignment;
import dev.moecluster.core.placement.ExpertPlacement;
import dev.moecluster.core.tensor.DType;
import dev.moecluster.core.tensor.FloatMatrix;
import dev.moecluster.proto.AdminGrpc;
import dev.moecluster.proto.AdminStatusRequest;
import dev.moecluster.proto.GetModelInfoRequest;
import dev.moecluster.proto.MoeForwardResponse;
import dev.moecluster.proto.RouterGrpc;
import dev.moecluster.router.RouterConfig;
import dev.moecluster.router.RouterServer;
import dev.moecluster.worker.ExpertWorker;
import dev.moecluster.worker.WorkerConfig;
import io.grpc.ChannelCredentials;
import io.grpc.InsecureChannelCredentials;
import io.grpc.ManagedChannel;
import io.grpc.Metadata;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.health.v1.HealthCheckRequest;
import io.grpc.health.v1.HealthCheckResponse.ServingStatus;
import io.grpc.health.v1.HealthGrpc;
import io.grpc.netty.shaded.io.grpc.netty.NettyChannelBuilder;
import io.grpc.stub.MetadataUtils;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.UUID;
import java.util.concurrent.TimeUnit;
import java.util.function.Function;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Mutual TLS and the bearer token on a real cluster over loopback: a router and two workers, every
 * port requiring client certificates from one CA (the workers too, so a MoeForward that succeeds went
 * router → worker over mutual TLS), the router requiring a bearer token on moe.v1.Router, and
 * plaintext health-only ports beside them.
 */
class TlsClusterTest {
    private static final String TOKEN = "tls-test-token-5f2c";

    @TempDir
    static Path dir;

    private static Path model;
    private static TestCertificates ca;
    private static TestCertificates otherCa;
    private static TestCertificates.Issued client;
    private static Path tokenFile;
    private static final List<ExpertWorker> workers = new ArrayList<>();
    private static RouterServer router;

    @BeforeAll
    static void startCluster() throws Exception {
        model = Clusters.tinyModel(Architecture.MIXTRAL);
        ca = TestCertificates.newAuthority(dir.resolve("ca"), "cluster");
        otherCa = TestCertificates.newAuthority(dir.resolve("other"), "other");
        client = ca.issue("client");
        tokenFile = Files.writeString(dir.resolve("token"), TOKEN + "\n");
        ModelConfig cfg = ModelConfig.load(model);
        List<String> names = List.of("worker-0", "worker-1");
        ExpertPlacement planned = ExpertPlacement.roundRobin(names, cfg, 1);
        for (int i = 0; i < names.size(); i++) {
            workers.add(ExpertWorker.start(WorkerConfig.defaults(names.get(i), model, new ExpertAssignment(planned.heldBy(i)))
                    .withTls(ca.tls(ca.issue("worker-" + i))).withHealthPort(0)));
        }
        ExpertPlacement placement = ExpertPlacement.roundRobin(workers.stream().map(ExpertWorker::address).toList(), cfg, 1);
        router = RouterServer.start(RouterConfig.defaults(model, placement).withTls(ca.tls(ca.issue("router")))
                .withHealthPort(0).withAuthToken(BearerToken.readFrom(tokenFile)).withMetricsPort(0).withHttpPort(0));
    }

    @AfterAll
    static void stopCluster() {
        if (router != null) {
            router.close();
        }
        workers.forEach(ExpertWorker::close);
    }

    @Test
    void clientWithTheRightCertificateAndTokenGetsTheReferenceResult() throws Exception {
        ModelConfig cfg = router.model();
        try (ReferenceMoeBlock reference = ReferenceMoeBlock.open(model)) {
            withChannel(router.port(), ca.tls(client).channelCredentials(), ch -> {
                var stub = authorized(ch);
                for (int layer : cfg.moeLayerList()) {
                    FloatMatrix x = Clusters.hidden(cfg, 16, layer + 11, DType.F32);
                    MoeForwardResponse resp = stub.moeForward(Clusters.request(layer, x, DType.F32));
                    ReferenceMoeBlock.Result ref = reference.forward(layer, x);
                    assertThat(Clusters.relativeError(Clusters.output(resp), ref.output())).as("layer %d", layer).isLessThan(1e-5);
                    assertThat(resp.getSelectedExpertsList())
                            .containsExactlyElementsOf(Arrays.stream(ref.gate().experts()).boxed().toList());
                }
                return null;
            });
        }
        // both workers computed: the router reached them over mutual TLS (they refuse anything else)
        assertThat(workers).allSatisfy(w -> assertThat(w.batchesServed()).isPositive());
    }

    /** The OpenAI HTTP API shares the gRPC port's TLS files and tokens: HTTPS with client certificates, bearer token. */
    @Test
    void openAiHttpApiRequiresTheSameCertificatesAndToken() throws Exception {
        assertThat(router.httpUrl()).startsWith("https://127.0.0.1:");
        java.net.URI models = java.net.URI.create(router.httpUrl() + "/models");
        // the client's certificate and key, and the cluster CA, in a context the JDK's client can use
        java.net.http.HttpClient withCertificate = java.net.http.HttpClient.newBuilder()
                .sslContext(ca.tls(client).serverSslContext()).build();
        var ok = withCertificate.send(java.net.http.HttpRequest.newBuilder(models).header("Authorization", "Bearer " + TOKEN)
                .build(), java.net.http.HttpResponse.BodyHandlers.ofString());
        assertThat(ok.statusCode()).isEqualTo(200);
        assertThat(ok.body()).contains("\"id\":\"" + router.model().name() + "\"");
        var noToken = withCertificate.send(java.net.http.HttpRequest.newBuilder(models).build(),
                java.net.http.HttpResponse.BodyHandlers.ofString());
        assertThat(noToken.statusCode()).isEqualTo(401);
        assertThat(noToken.body()).contains("missing bearer token");
        // trusting the CA but presenting no certificate: the handshake fails
        java.security.KeyStore trust = java.security.KeyStore.getInstance("PKCS12");
        trust.load(null, null);
        try (var in = Files.newInputStream(ca.caFile())) {
            trust.setCertificateEntry("ca", java.security.cert.CertificateFactory.getInstance("X.509").generateCertificate(in));
        }
        javax.net.ssl.TrustManagerFactory tmf = javax.net.ssl.TrustManagerFactory.getInstance("PKIX");
        tmf.init(trust);
        javax.net.ssl.SSLContext trustOnly = javax.net.ssl.SSLContext.getInstance("TLS");
        trustOnly.init(null, tmf.getTrustManagers(), null);
        java.net.http.HttpClient noCertificate = java.net.http.HttpClient.newBuilder().sslContext(trustOnly).build();
        assertThatThrownBy(() -> noCertificate.send(java.net.http.HttpRequest.newBuilder(models)
                .header("Authorization", "Bearer " + TOKEN).build(), java.net.http.HttpResponse.BodyHandlers.ofString()))
                .isInstanceOf(java.io.IOException.class);
    }

    /** MoeClient with the CA, a client certificate and the token file: the same files the CLI takes. */
    @Test
    void moeClientWithCertificateAndTokenFileGetsTheReferenceResult() throws Exception {
        ModelConfig cfg = router.model();
        int layer = cfg.moeLayerList().getFirst();
        FloatMatrix x = Clusters.hidden(cfg, 8, 41, DType.F32);
        try (ReferenceMoeBlock reference = ReferenceMoeBlock.open(model);
                dev.moecluster.client.MoeClient moe = dev.moecluster.client.MoeClient.builder(router.address())
                        .tls(ca.caFile()).clientCertificate(client.cert(), client.key()).bearerTokenFile(tokenFile).build()) {
            MoeForwardResponse resp = moe.moeForward(Clusters.request(layer, x, DType.F32));
            assertThat(Clusters.relativeError(Clusters.output(resp), reference.forward(layer, x).output())).isLessThan(1e-5);
            var done = moe.generate("hello", dev.moecluster.proto.SamplingParams.newBuilder().setMaxTokens(3)
                    .setTemperature(0f).setIgnoreEos(true).build()).readAll();
            assertThat(done.tokenIds()).hasSize(3);
        }
        // trusting the CA but presenting no certificate: the router refuses the handshake
        try (dev.moecluster.client.MoeClient noCertificate = dev.moecluster.client.MoeClient.builder(router.address())
                .tls(ca.caFile()).bearerTokenFile(tokenFile).retries(1, java.time.Duration.ZERO).build()) {
            assertThatThrownBy(noCertificate::modelInfo).isInstanceOfSatisfying(StatusRuntimeException.class,
                    e -> assertThat(e.getStatus().getCode()).isEqualTo(Status.Code.UNAVAILABLE));
        }
    }

    @Test
    void clientWithoutACertificateIsRefused() {
        assertRefused(router.port(), TlsConfig.fromPemFiles(null, null, ca.caFile()).channelCredentials());
    }

    @Test
    void clientWithACertificateFromAnotherCaIsRefused() {
        TestCertificates.Issued stranger = otherCa.issue("stranger");
        assertRefused(router.port(), TlsConfig.fromPemFiles(stranger.cert(), stranger.key(), ca.caFile()).channelCredentials());
    }

    @Test
    void plaintextClientIsRefusedOnRouterAndWorkers() {
        assertRefused(router.port(), InsecureChannelCredentials.create());
        for (ExpertWorker w : workers) {
            assertRefused(w.port(), InsecureChannelCredentials.create());
        }
    }

    @Test
    void missingOrWrongBearerTokenIsUnauthenticatedWhileHealthNeedsNone() throws Exception {
        withChannel(router.port(), ca.tls(client).channelCredentials(), ch -> {
            var noToken = Clusters.stub(ch);
            assertThatThrownBy(() -> noToken.getModelInfo(GetModelInfoRequest.getDefaultInstance()))
                    .isInstanceOfSatisfying(StatusRuntimeException.class, e -> {
                        assertThat(e.getStatus().getCode()).isEqualTo(Status.Code.UNAUTHENTICATED);
                        assertThat(e.getStatus().getDescription()).isEqualTo("missing bearer token");
                    });
            var wrongToken = Clusters.stub(ch).withCallCredentials(BearerToken.of(TOKEN + "x").callCredentials());
            assertThatThrownBy(() -> wrongToken.getModelInfo(GetModelInfoRequest.getDefaultInstance()))
                    .isInstanceOfSatisfying(StatusRuntimeException.class, e -> {
                        assertThat(e.getStatus().getCode()).isEqualTo(Status.Code.UNAUTHENTICATED);
                        assertThat(e.getStatus().getDescription()).isEqualTo("invalid bearer token");
                    });
            Metadata basic = new Metadata();
            basic.put(Metadata.Key.of("authorization", Metadata.ASCII_STRING_MARSHALLER), "Basic " + TOKEN);
            var otherScheme = Clusters.stub(ch).withInterceptors(MetadataUtils.newAttachHeadersInterceptor(basic));
            assertThatThrownBy(() -> otherScheme.getModelInfo(GetModelInfoRequest.getDefaultInstance()))
                    .isInstanceOfSatisfying(StatusRuntimeException.class,
                            e -> assertThat(e.getStatus().getDescription()).isEqualTo("invalid bearer token"));
            assertThat(authorized(ch).getModelInfo(GetModelInfoRequest.getDefaultInstance()).getNumExperts()).isEqualTo(8);
            // refusals are counted: the token check runs inside the request counter
            assertThat(scrape(router.metricsPort())).containsPattern(
                    "moe_router_requests_total\\{api=\"grpc\",code=\"UNAUTHENTICATED\",method=\"GetModelInfo\"\\} [1-9]");
            assertThat(HealthGrpc.newBlockingStub(ch).withDeadlineAfter(10, TimeUnit.SECONDS)
                    .check(HealthCheckRequest.newBuilder().setService("moe.v1.Router").build()).getStatus())
                    .isEqualTo(ServingStatus.SERVING);
            return null;
        });
    }

    @Test
    void healthPortsAnswerPlaintextWhileTheMainPortsRequireMutualTls() throws Exception {
        assertThat(router.healthPort()).isPositive();
        for (String service : List.of("", "moe.v1.Router")) {
            assertThat(plaintextHealth(router.healthPort(), service)).as(service).isEqualTo(ServingStatus.SERVING);
        }
        for (ExpertWorker w : workers) {
            assertThat(plaintextHealth(w.healthPort(), "moe.v1.ExpertService")).isEqualTo(ServingStatus.SERVING);
        }
    }

    @Test
    void routerWhoseCertificateTheWorkersDoNotTrustCannotComputeExperts() throws Exception {
        // trusts the workers (same CA) but presents a certificate from another CA, which they refuse
        TestCertificates.Issued stranger = otherCa.issue("stranger-router");
        RouterConfig rc = RouterConfig.defaults(model, router.placement())
                .withTls(TlsConfig.fromPemFiles(stranger.cert(), stranger.key(), ca.caFile()))
                .withExpertTimeout(java.time.Duration.ofSeconds(20));
        try (RouterServer strangerRouter = RouterServer.start(rc)) {
            ModelConfig cfg = strangerRouter.model();
            withChannel(strangerRouter.port(), ca.tls(client).channelCredentials(), ch -> {
                FloatMatrix x = Clusters.hidden(cfg, 4, 3, DType.F32);
                assertThatThrownBy(() -> Clusters.stub(ch).moeForward(Clusters.request(0, x, DType.F32)))
                        .isInstanceOfSatisfying(StatusRuntimeException.class,
                                e -> assertThat(e.getStatus().getCode()).isEqualTo(Status.Code.UNAVAILABLE));
                return null;
            });
        }
    }

    @Test
    void cliProbeAndGenerateUseTheCertificateAndTokenFiles() {
        String[] tlsArgs = {"--target", router.address(), "--tls-ca", ca.caFile().toString(), "--tls-cert",
            client.cert().toString(), "--tls-key", client.key().toString()};
        Object[] ok = MoeCommandTest.run(concat(new String[] {"probe", "--model", model.toString(), "--requests", "4", "--tokens", "4",
            "--token-file", tokenFile.toString()}, tlsArgs));
        assertThat(ok[0]).as(ok[1] + "" + ok[2]).isEqualTo(0);
        assertThat((String) ok[1]).contains("checked 4 results against the reference", "OK");
        Object[] noToken = MoeCommandTest.run(concat(new String[] {"probe", "--requests", "1"}, tlsArgs));
        assertThat(noToken[0]).isEqualTo(1);
        assertThat((String) noToken[2]).contains("UNAUTHENTICATED: missing bearer token");
        Object[] generated = MoeCommandTest.run(concat(new String[] {"generate", "--prompt", "hello", "--max-tokens", "3",
            "--token-file", tokenFile.toString()}, tlsArgs));
        assertThat(generated[0]).as(generated[1] + "" + generated[2]).isEqualTo(0);
    }

    @Test
    void coordinatorAdminApiWithMutualTls() throws Exception {
        CoordinatorConfig cc = CoordinatorConfig.local("moe-tls-" + UUID.randomUUID(), LocalCluster.freePort(), model, 1, 1)
                .withTls(ca.tls(ca.issue("coordinator"))).withHealthPort(0);
        try (CoordinatorServer coordinator = CoordinatorServer.start(cc)) {
            int members = withChannel(coordinator.adminPort(), ca.tls(client).channelCredentials(),
                    ch -> AdminGrpc.newBlockingStub(ch).withDeadlineAfter(15, TimeUnit.SECONDS)
                            .status(AdminStatusRequest.getDefaultInstance()).getMembersCount());
            assertThat(members).isEqualTo(1);
            assertRefused(coordinator.adminPort(), InsecureChannelCredentials.create());
            assertRefused(coordinator.adminPort(), TlsConfig.fromPemFiles(null, null, ca.caFile()).channelCredentials());
            assertThat(plaintextHealth(coordinator.healthPort(), "")).isEqualTo(ServingStatus.SERVING);
            Object[] cli = MoeCommandTest.run("admin", "status", "--target", coordinator.adminAddress(), "--tls-ca", ca.caFile().toString(),
                    "--tls-cert", client.cert().toString(), "--tls-key", client.key().toString(), "--json");
            assertThat(cli[0]).as(cli[1] + "" + cli[2]).isEqualTo(0);
            assertThat((String) cli[1]).contains("\"members\"");
            Object[] plaintext = MoeCommandTest.run("admin", "status", "--target", coordinator.adminAddress());
            assertThat(plaintext[0]).isEqualTo(1);
            assertThat((String) plaintext[2]).contains("UNAVAILABLE");

            // the Control API takes the same mutual TLS: a worker presenting its certificate registers, a
            // plaintext or certificate-less client is refused
            assertRefused(coordinator.controlPort(), InsecureChannelCredentials.create());
            assertRefused(coordinator.controlPort(), TlsConfig.fromPemFiles(null, null, ca.caFile()).channelCredentials());
            TlsConfig workerTls = ca.tls(ca.issue("worker-tls-control"));
            try (ExpertWorker worker = ExpertWorker.start(WorkerConfig.defaults("tls-control", model, new ExpertAssignment(Map.of()))
                    .withTls(workerTls).withControlPlane(coordinator.controlPlane().withTls(workerTls), WorkerConfig.DEFAULT_MEMORY_BYTES))) {
                CoordinatorClusterTest.await("the worker registers over mutual TLS", java.time.Duration.ofSeconds(60),
                        () -> registered(coordinator, worker.address()));
            }
        }
    }

    @Test
    void badPemPathsFailAtStartNamingTheFile() {
        Path missing = dir.resolve("missing.crt");
        Object[] r = MoeCommandTest.run("router", "--model", model.toString(), "--workers", "127.0.0.1:1", "--port", "0",
                "--metrics-port", "-1", "--tls-cert", missing.toString(), "--tls-key", client.key().toString());
        assertThat(r[0]).isEqualTo(1);
        assertThat((String) r[2]).contains("TLS certificate chain file " + missing + " does not exist");
        Object[] w = MoeCommandTest.run("worker", "--model", model.toString(), "--experts", "all", "--port", "0", "--metrics-port", "-1",
                "--tls-cert", client.cert().toString(), "--tls-key", client.cert().toString());
        assertThat(w[0]).isEqualTo(1);
        assertThat((String) w[2]).contains("TLS private key file " + client.cert() + " holds no PEM private key");
        Object[] t = MoeCommandTest.run("router", "--model", model.toString(), "--workers", "127.0.0.1:1", "--port", "0",
                "--metrics-port", "-1", "--auth-token-file", missing.toString());
        assertThat(t[0]).isEqualTo(1);
        assertThat((String) t[2]).contains("token file " + missing + " does not exist");
    }

    @Test
    void serverCommandsListTheTlsAndHealthFlags() {
        for (String command : List.of("router", "worker", "coordinator")) {
            Object[] r = MoeCommandTest.run(command, "--help");
            assertThat((String) r[1]).as(command).contains("--tls-cert", "--tls-key", "--tls-ca", "--health-port");
        }
        assertThat((String) MoeCommandTest.run("router", "--help")[1]).contains("--auth-token-file");
        for (String command : List.of("probe", "generate")) {
            assertThat((String) MoeCommandTest.run(command, "--help")[1]).as(command).contains("--tls-ca", "--tls-cert", "--tls-key", "--token-file");
        }
        assertThat((String) MoeCommandTest.run("admin", "status", "--help")[1]).contains("--tls-ca", "--tls-cert", "--tls-key");
    }

    @Test
    void configsDefaultToPlaintextWithoutHealthPortOrTokenAndKeepThemThroughCopies() {
        RouterConfig rc = RouterConfig.defaults(model, router.placement());
        assertThat(rc.tls()).isNull();
        assertThat(rc.healthPort()).isEqualTo(-1);
        assertThat(rc.authToken()).isNull();
        assertThat(rc.httpPort()).isEqualTo(RouterConfig.NO_HTTP_PORT);
        TlsConfig tls = ca.tls(client);
        BearerToken token = BearerToken.of(TOKEN);
        RouterConfig secured = rc.withHttpPort(8000).withTls(tls).withHealthPort(50052).withAuthToken(token).withPort(7)
                .withMetricsPort(0).withHost("0.0.0.0").withGeneration(rc.generation()).withMaxTokensPerRequest(9)
                .withMaxInboundMessageBytes(4096).withExpertTimeout(java.time.Duration.ofSeconds(3)).withWireDtype(null)
                .withControlPlane(null);
        assertThat(secured.httpPort()).isEqualTo(8000);
        assertThat(secured.tls()).isEqualTo(tls);
        assertThat(secured.healthPort()).isEqualTo(50052);
        assertThat(secured.authToken()).isSameAs(token);
        assertThat(secured.port()).isEqualTo(7);
        assertThat(secured.toString()).doesNotContain(TOKEN);
        assertThatThrownBy(() -> rc.withHealthPort(-2)).hasMessageContaining("health port must be -1 (none), 0 (free port) or 1..65535");
        assertThatThrownBy(() -> rc.withHttpPort(65536)).hasMessageContaining("HTTP port must be -1 (none), 0 (free port) or 1..65535");

        WorkerConfig wc = WorkerConfig.defaults("w", model, new ExpertAssignment(Map.of()));
        assertThat(wc.tls()).isNull();
        assertThat(wc.healthPort()).isEqualTo(-1);
        WorkerConfig securedWorker = wc.withTls(tls).withHealthPort(50062).withMetrics(0, false);
        assertThat(securedWorker.tls()).isEqualTo(tls);
        assertThat(securedWorker.healthPort()).isEqualTo(50062);

        CoordinatorConfig cc = CoordinatorConfig.local("c", 5701, model, 1, 1);
        assertThat(cc.tls()).isNull();
        assertThat(cc.healthPort()).isEqualTo(-1);
        CoordinatorConfig securedCoordinator = cc.withTls(tls).withHealthPort(50072).withAdminPort(50071);
        assertThat(securedCoordinator.tls()).isEqualTo(tls);
        assertThat(securedCoordinator.healthPort()).isEqualTo(50072);
    }

    private static RouterGrpc.RouterBlockingStub authorized(ManagedChannel ch) {
        return Clusters.stub(ch).withCallCredentials(BearerToken.of(TOKEN).callCredentials());
    }

    private static <T> T withChannel(int port, ChannelCredentials credentials, Function<ManagedChannel, T> body)
            throws InterruptedException {
        ManagedChannel ch = NettyChannelBuilder.forAddress("127.0.0.1", port, credentials).build();
        try {
            return body.apply(ch);
        } finally {
            ch.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
        }
    }

    private static ServingStatus plaintextHealth(int port, String service) throws InterruptedException {
        return withChannel(port, InsecureChannelCredentials.create(), ch -> HealthGrpc.newBlockingStub(ch)
                .withDeadlineAfter(10, TimeUnit.SECONDS).check(HealthCheckRequest.newBuilder().setService(service).build())
                .getStatus());
    }

    /** A TLS handshake that fails, or plaintext against TLS, ends the call UNAVAILABLE before any service runs. */
    private boolean registered(CoordinatorServer coordinator, String address) {
        try {
            return withChannel(coordinator.adminPort(), ca.tls(client).channelCredentials(), ch -> AdminGrpc.newBlockingStub(ch)
                    .withDeadlineAfter(15, TimeUnit.SECONDS).listWorkers(dev.moecluster.proto.ListWorkersRequest.getDefaultInstance())
                    .getWorkersList().stream().anyMatch(w -> w.getAddress().equals(address)));
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException(e);
        }
    }

    private static void assertRefused(int port, ChannelCredentials credentials) {
        assertThatThrownBy(() -> withChannel(port, credentials, ch -> HealthGrpc.newBlockingStub(ch)
                .withDeadlineAfter(10, TimeUnit.SECONDS).check(HealthCheckRequest.getDefaultInstance())))
                .isInstanceOfSatisfying(StatusRuntimeException.class,
                        e -> assertThat(e.getStatus().getCode()).isEqualTo(Status.Code.UNAVAILABLE));
    }

    private static String scrape(int port) {
        try {
            return HttpClient.newHttpClient().send(HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + port + "/metrics")).build(),
                    HttpResponse.BodyHandlers.ofString()).body();
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException(e);
        }
    }

    private static String[] concat(String[] a, String[] b) {
        String[] all = Arrays.copyOf(a, a.length + b.length);
        System.arraycopy(b, 0, all, a.length, b.length);
        return all;
    }
}
