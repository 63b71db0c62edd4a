package dev.moecluster.cli;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.moecluster.control.BearerToken;
import dev.moecluster.control.ControlAccess;
import dev.moecluster.control.ControlMaps;
import dev.moecluster.control.TestCertificates;
import dev.moecluster.control.TlsConfig;
import dev.moecluster.control.WorkerRecord;
import dev.moecluster.control.WorkerState;
import dev.moecluster.coordinator.CoordinatorConfig;
import dev.moecluster.coordinator.CoordinatorServer;
import dev.moecluster.core.model.Architecture;
import dev.moecluster.core.model.ModelConfig;
import dev.moecluster.core.moe.ReferenceMoeBlock;
import dev.moecluster.core.placement.ExpertAssignment;
import dev.moecluster.core.placement.ExpertPlacement;
import dev.moecluster.core.tensor.DType;
import dev.moecluster.core.tensor.FloatMatrix;
import dev.moecluster.proto.ControlGrpc;
import dev.moecluster.proto.MoeForwardResponse;
import dev.moecluster.proto.WatchAssignmentRequest;
import dev.moecluster.proto.WorkerHeartbeatRequest;
import dev.moecluster.router.RouterConfig;
import dev.moecluster.router.RouterServer;
import dev.moecluster.worker.ExpertWorker;
import dev.moecluster.worker.WorkerConfig;
import io.grpc.ManagedChannel;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.netty.shaded.io.grpc.netty.NettyChannelBuilder;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Map;
import java.util.UUID;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Under mutual TLS a worker registers only under a host its client certificate names, the name routers check
 * when they dial it: the worker token and any certificate of the CA are not enough to put another address
 * (or someone else's) into the registry. Real coordinator, worker and router over loopback, real certificates.
 */
class WorkerIdentityTest {
    private static final String WORKER_TOKEN = "identity-worker-token";
    private static final String ROUTER_TOKEN = "identity-router-token";

    @TempDir
    Path dir;

    @Test
    void aWorkerRegistersOnlyUnderAHostItsCertificateNames() throws Exception {
        Path model = Clusters.tinyModel(Architecture.MIXTRAL);
        TestCertificates ca = TestCertificates.newAuthority(dir.resolve("ca"), "identity");
        CoordinatorConfig cc = CoordinatorConfig.local("moe-identity-" + UUID.randomUUID(), LocalCluster.freePort(), model, 1, 1)
                .withTls(ca.tls(ca.issue("coordinator")))
                .withControl(0, new ControlAccess(BearerToken.of(WORKER_TOKEN), BearerToken.of(ROUTER_TOKEN))).withMetricsPort(0);
        assertThat(cc.bindsWorkerIdentity()).isTrue();
        TestCertificates.Issued serverOnly = ca.issue("server-only");
        assertThat(cc.withTls(TlsConfig.fromPemFiles(serverOnly.cert(), serverOnly.key(), null)).bindsWorkerIdentity())
                .as("TLS without client certificates has no identity to bind").isFalse();
        try (CoordinatorServer coordinator = CoordinatorServer.start(cc)) {
            // a worker whose certificate names 127.0.0.1, the host it advertises: registers and serves
            TlsConfig workerTls = ca.tls(ca.issue("worker-a"));
            TlsConfig routerTls = ca.tls(ca.issue("router"));
            try (ExpertWorker worker = ExpertWorker.start(WorkerConfig.defaults("worker-a", model, new ExpertAssignment(Map.of()))
                    .withTls(workerTls).withControlPlane(coordinator.controlPlane().withTls(workerTls)
                            .withToken(BearerToken.of(WORKER_TOKEN)), WorkerConfig.DEFAULT_MEMORY_BYTES));
                    RouterServer router = RouterServer.start(RouterConfig.defaults(model, ExpertPlacement.none()).withTls(routerTls)
                            .withControlPlane(coordinator.controlPlane().withTls(routerTls).withToken(BearerToken.of(ROUTER_TOKEN))))) {
                ModelConfig cfg = router.model();
                ExpertPlacement placed = LocalCluster.awaitPlacement(router, cfg, Duration.ofSeconds(60));
                assertThat(placed.workers()).containsExactly(worker.address());
                int layer = cfg.moeLayerList().getFirst();
                FloatMatrix x = Clusters.hidden(cfg, 8, 17, DType.F32);
                ManagedChannel toRouter = NettyChannelBuilder.forAddress("127.0.0.1", router.port(),
                        ca.tls(ca.issue("client")).channelCredentials()).build();
                try (ReferenceMoeBlock reference = ReferenceMoeBlock.open(model)) {
                    MoeForwardResponse answer = Clusters.stub(toRouter).moeForward(Clusters.request(layer, x, DType.F32));
                    assertThat(Clusters.relativeError(Clusters.output(answer), reference.forward(layer, x).output())).isLessThan(1e-5);
                } finally {
                    toRouter.shutdownNow();
                }
                assertThat(worker.batchesServed()).isPositive();

                Map<String, String> registry = coordinator.hazelcast().getMap(ControlMaps.WORKERS);
                assertThat(registry.keySet()).containsExactly(worker.address());

                // the worker token and a valid certificate of the CA, but for another host
                ManagedChannel impostor = controlChannel(coordinator, ca, ca.issue("impostor", "DNS:impostor.example", "IP:10.9.9.9"));
                try {
                    // taking over the registered worker's address, as a restarted process would
                    WorkerHeartbeatRequest hijack = heartbeat("impostor", worker.address(), true);
                    assertThatThrownBy(() -> control(impostor).workerHeartbeat(hijack)).isInstanceOfSatisfying(StatusRuntimeException.class, e -> {
                        assertThat(e.getStatus().getCode()).isEqualTo(Status.Code.PERMISSION_DENIED);
                        assertThat(e.getStatus().getDescription()).isEqualTo("worker address " + worker.address()
                                + ": host 127.0.0.1 is not named by the caller's client certificate CN=impostor"
                                + " (DNS:impostor.example, IP:10.9.9.9); a worker registers only under a host its certificate names");
                    });
                    // or registering an address of its own choosing
                    assertThatThrownBy(() -> control(impostor).workerHeartbeat(heartbeat("impostor", "127.0.0.1:1", true)))
                            .isInstanceOfSatisfying(StatusRuntimeException.class,
                                    e -> assertThat(e.getStatus().getCode()).isEqualTo(Status.Code.PERMISSION_DENIED));
                    // nor may it follow another worker's assignment
                    assertThatThrownBy(() -> control(impostor).watchAssignment(WatchAssignmentRequest.newBuilder()
                            .setAddress(worker.address()).build()).hasNext()).isInstanceOfSatisfying(StatusRuntimeException.class,
                                    e -> assertThat(e.getStatus().getCode()).isEqualTo(Status.Code.PERMISSION_DENIED));
                } finally {
                    impostor.shutdownNow();
                }
                // the registry is as it was: one worker, the real one, still ACTIVE
                assertThat(registry.keySet()).containsExactly(worker.address());
                WorkerRecord real = WorkerRecord.fromJson(registry.get(worker.address()));
                assertThat(real.id()).isEqualTo("worker-a");
                assertThat(real.state()).isEqualTo(WorkerState.ACTIVE);
                // each refusal counted with its code, beside the real worker's heartbeats
                Exposition metrics = Exposition.scrape(coordinator.metricsPort());
                assertThat(controlCalls(metrics, "WorkerHeartbeat", "PERMISSION_DENIED")).isEqualTo(2);
                assertThat(controlCalls(metrics, "WatchAssignment", "PERMISSION_DENIED")).isEqualTo(1);
                assertThat(controlCalls(metrics, "WorkerHeartbeat", "OK")).isPositive();

                // the chart's certificates name every worker pod with one wildcard: a pod's name matches it
                ManagedChannel pod = controlChannel(coordinator, ca, ca.issue("pods", "DNS:*.moe-worker.moe.svc.cluster.local"));
                try {
                    String podAddress = "moe-worker-7.moe-worker.moe.svc.cluster.local:50061";
                    WorkerRecord written = WorkerRecord.fromJson(control(pod).workerHeartbeat(heartbeat("moe-worker-7", podAddress, true))
                            .getWorkerJson());
                    assertThat(written.address()).isEqualTo(podAddress);
                    assertThat(registry).containsKey(podAddress);
                    assertThatThrownBy(() -> control(pod).workerHeartbeat(heartbeat("x", "a.b.moe-worker.moe.svc.cluster.local:50061", true)))
                            .isInstanceOfSatisfying(StatusRuntimeException.class,
                                    e -> assertThat(e.getStatus().getCode()).isEqualTo(Status.Code.PERMISSION_DENIED));
                } finally {
                    pod.shutdownNow();
                }
            }
        }
    }

    /** moe_coordinator_requests_total of Control API calls to {@code method} that ended with {@code code}. */
    private static double controlCalls(Exposition metrics, String method, String code) {
        return metrics.sum("moe_coordinator_requests_total", s -> s.is("api", "control") && s.is("method", method) && s.is("code", code));
    }

    private static ManagedChannel controlChannel(CoordinatorServer coordinator, TestCertificates ca, TestCertificates.Issued identity) {
        return NettyChannelBuilder.forAddress("127.0.0.1", coordinator.controlPort(), ca.tls(identity).channelCredentials()).build();
    }

    private static ControlGrpc.ControlBlockingStub control(ManagedChannel channel) {
        return ControlGrpc.newBlockingStub(channel).withDeadlineAfter(15, TimeUnit.SECONDS)
                .withCallCredentials(BearerToken.of(WORKER_TOKEN).callCredentials());
    }

    private static WorkerHeartbeatRequest heartbeat(String id, String address, boolean first) {
        return WorkerHeartbeatRequest.newBuilder().setFirst(first)
                .setWorkerJson(new WorkerRecord(id, address, "cpu", 1L << 30, WorkerState.ACTIVE, Map.of(), 0, 0).toJson()).build();
    }
}
