package dev.moecluster.cli;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.moecluster.control.BearerToken;
import dev.moecluster.control.DataPlaneAccess;
import dev.moecluster.control.TestCertificates;
import dev.moecluster.core.model.Architecture;
import dev.moecluster.core.model.ModelConfig;
import dev.moecluster.core.moe.ReferenceMoeBlock;
import dev.moecluster.core.placement.ExpertAssignment;
import dev.moecluster.core.placement.ExpertPlacement;
import dev.moecluster.core.tensor.DType;
import dev.moecluster.core.tensor.FloatMatrix;
import dev.moecluster.proto.DescribeRequest;
import dev.moecluster.proto.ExpertServiceGrpc;
import dev.moecluster.router.RouterConfig;
import dev.moecluster.router.RouterServer;
import dev.moecluster.worker.ExpertWorker;
import dev.moecluster.worker.WorkerConfig;
import io.grpc.ChannelCredentials;
import io.grpc.InsecureChannelCredentials;
import io.grpc.ManagedChannel;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.netty.shaded.io.grpc.netty.NettyChannelBuilder;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import java.util.function.UnaryOperator;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Workers serve only routers: the internal token on a plaintext cluster, the certificate allow-list under mutual TLS. */
class DataPlaneAccessClusterTest {
    private final Path model = Clusters.tinyModel(Architecture.MIXTRAL);

    @TempDir
    Path dir;

    @Test
    void plaintextWorkersServeOnlyRoutersWithTheInternalToken() throws Exception {
        DataPlaneAccess access = new DataPlaneAccess(BearerToken.of("internal-7d1e"), Set.of());
        List<ExpertWorker> workers = startWorkers(w -> w.withDataPlane(access));
        try {
            ExpertPlacement placement = placement(workers);
            try (RouterServer router = RouterServer.start(RouterConfig.defaults(model, placement).withDataPlane(access))) {
                assertMatchesReference(router, InsecureChannelCredentials.create());
            }
            try (RouterServer stranger = RouterServer.start(RouterConfig.defaults(model, placement)
                    .withExpertTimeout(Duration.ofSeconds(20)))) {
                assertRouterCannotCompute(stranger, InsecureChannelCredentials.create());
            }
            assertDescribeRefused(workers.getFirst(), InsecureChannelCredentials.create(), Status.Code.UNAUTHENTICATED);
        } finally {
            workers.forEach(ExpertWorker::close);
        }
    }

    @Test
    void underMutualTlsWorkersServeOnlyAllowedRouterCertificates() throws Exception {
        TestCertificates ca = TestCertificates.newAuthority(dir.resolve("ca"), "cluster");
        DataPlaneAccess access = new DataPlaneAccess(null, Set.of("router"));
        List<ExpertWorker> workers = startWorkers(w -> w.withTls(ca.tls(ca.issue(w.workerId()))).withDataPlane(access));
        try {
            ExpertPlacement placement = placement(workers);
            try (RouterServer router = RouterServer.start(RouterConfig.defaults(model, placement).withTls(ca.tls(ca.issue("router"))))) {
                assertMatchesReference(router, ca.tls(ca.issue("user")).channelCredentials());
            }
            // the public API's client certificate, from the same CA, passes the handshake but not the allow-list
            TestCertificates.Issued client = ca.issue("client");
            try (RouterServer impostor = RouterServer.start(RouterConfig.defaults(model, placement).withTls(ca.tls(client))
                    .withExpertTimeout(Duration.ofSeconds(20)))) {
                assertRouterCannotCompute(impostor, ca.tls(ca.issue("user")).channelCredentials());
            }
            assertDescribeRefused(workers.getFirst(), ca.tls(client).channelCredentials(), Status.Code.PERMISSION_DENIED);
        } finally {
            workers.forEach(ExpertWorker::close);
        }
    }

    private List<ExpertWorker> startWorkers(UnaryOperator<WorkerConfig> configure) throws Exception {
        ModelConfig cfg = ModelConfig.load(model);
        List<String> names = List.of("worker-0", "worker-1");
        ExpertPlacement planned = ExpertPlacement.roundRobin(names, cfg, 1);
        List<ExpertWorker> workers = new ArrayList<>();
        for (int i = 0; i < names.size(); i++) {
            workers.add(ExpertWorker.start(configure.apply(
                    WorkerConfig.defaults(names.get(i), model, new ExpertAssignment(planned.heldBy(i))))));
        }
        return workers;
    }

    private ExpertPlacement placement(List<ExpertWorker> workers) throws Exception {
        return ExpertPlacement.roundRobin(workers.stream().map(ExpertWorker::address).toList(), ModelConfig.load(model), 1);
    }

    private static ManagedChannel channel(RouterServer router, ChannelCredentials credentials) {
        return NettyChannelBuilder.forAddress("127.0.0.1", router.port(), credentials).overrideAuthority("localhost").build();
    }

    private void assertMatchesReference(RouterServer router, ChannelCredentials credentials) throws Exception {
        ModelConfig cfg = router.model();
        ManagedChannel ch = channel(router, credentials);
        try (ReferenceMoeBlock reference = ReferenceMoeBlock.open(model)) {
            for (int layer : cfg.moeLayerList()) {
                FloatMatrix x = Clusters.hidden(cfg, 8, layer + 3, DType.F32);
                FloatMatrix y = Clusters.output(Clusters.stub(ch).moeForward(Clusters.request(layer, x, DType.F32)));
                assertThat(Clusters.relativeError(y, reference.forward(layer, x).output())).isLessThan(1e-5);
            }
        } finally {
            ch.shutdownNow();
        }
    }

    private static void assertRouterCannotCompute(RouterServer router, ChannelCredentials credentials) {
        ModelConfig cfg = router.model();
        ManagedChannel ch = channel(router, credentials);
        try {
            FloatMatrix x = Clusters.hidden(cfg, 4, 3, DType.F32);
            assertThatThrownBy(() -> Clusters.stub(ch).moeForward(Clusters.request(cfg.moeLayerList().getFirst(), x, DType.F32)))
                    .isInstanceOfSatisfying(StatusRuntimeException.class,
                            e -> assertThat(e.getStatus().getCode()).isEqualTo(Status.Code.UNAVAILABLE));
        } finally {
            ch.shutdownNow();
        }
    }

    private static void assertDescribeRefused(ExpertWorker worker, ChannelCredentials credentials, Status.Code code) {
        ManagedChannel ch = NettyChannelBuilder.forAddress("127.0.0.1", worker.port(), credentials).overrideAuthority("localhost").build();
        try {
            assertThatThrownBy(() -> ExpertServiceGrpc.newBlockingStub(ch).withDeadlineAfter(10, TimeUnit.SECONDS)
                    .describe(DescribeRequest.getDefaultInstance()))
                    .isInstanceOfSatisfying(StatusRuntimeException.class, e -> assertThat(e.getStatus().getCode()).isEqualTo(code));
        } finally {
            ch.shutdownNow();
        }
    }
}
