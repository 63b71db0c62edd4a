package dev.moecluster.cli;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.moecluster.core.model.Architecture;
import dev.moecluster.core.model.ModelConfig;
import dev.moecluster.core.moe.ReferenceMoeBlock;
import dev.moecluster.core.placement.ExpertPlacement;
import dev.moecluster.core.tensor.DType;
import dev.moecluster.core.tensor.FloatMatrix;
import dev.moecluster.proto.MoeForwardResponse;
import dev.moecluster.proto.RouterGrpc;
import dev.moecluster.router.RouterConfig;
import dev.moecluster.router.RouterServer;
import dev.moecluster.worker.CpuBackend;
import io.grpc.ManagedChannel;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import java.nio.file.Path;
import java.time.Duration;
import java.util.HashMap;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;

/** Replicas serve identical results, and a dead or stalled worker never loses or hangs a request. */
class FailoverTest {
    private final Path dir = Clusters.tinyModel(Architecture.MIXTRAL);

    @Test
    void eitherReplicaServesTheSameResult() throws Exception {
        try (LocalCluster cluster = LocalCluster.start(LocalCluster.Options.of(dir, 3, 2));
                ReferenceMoeBlock reference = ReferenceMoeBlock.open(dir)) {
            ModelConfig cfg = cluster.model();
            ExpertPlacement both = cluster.placement();
            // two routers over the same workers: one only ever uses each expert's first replica, one its second
            try (RouterServer first = RouterServer.start(RouterConfig.defaults(dir, onlyReplica(both, 0)));
                    RouterServer second = RouterServer.start(RouterConfig.defaults(dir, onlyReplica(both, 1)))) {
                FloatMatrix x = Clusters.hidden(cfg, 48, 3, DType.F32);
                FloatMatrix a = call(first.address(), 1, x);
                FloatMatrix b = call(second.address(), 1, x);
                FloatMatrix c = call(cluster.router().address(), 1, x);
                try (RouterServer lanes = RouterServer.start(RouterConfig.defaults(dir, both).withChannelsPerWorker(3))) {
                    // three connections per worker, used in turn: the same rows, the same results
                    for (int i = 0; i < 4; i++) {
                        assertThat(call(lanes.address(), 1, x).data()).containsExactly(a.data());
                    }
                }
                assertThat(b.data()).containsExactly(a.data());
                assertThat(c.data()).containsExactly(a.data());
                assertThat(Clusters.relativeError(a, reference.forward(1, x).output())).isLessThan(1e-5);
                assertThat(first.stats().rows()).isEqualTo(48L * cfg.expertsPerToken());
                assertThat(second.stats().rows()).isEqualTo(48L * cfg.expertsPerToken());
            }
        }
    }

    @Test
    void failsOverToReplicaWhenWorkerDiesMidRequest() throws Exception {
        GatedBackend gated = new GatedBackend();
        var options = LocalCluster.Options.of(dir, 3, 2).withBackends(i -> i == 0 ? gated : new CpuBackend());
        try (LocalCluster cluster = LocalCluster.start(options);
                ReferenceMoeBlock reference = ReferenceMoeBlock.open(dir)) {
            ModelConfig cfg = cluster.model();
            ManagedChannel channel = Clusters.channel(cluster.router().address());
            try {
                FloatMatrix x = Clusters.hidden(cfg, 64, 11, DType.F32);
                gated.arm();
                CompletableFuture<MoeForwardResponse> pending = CompletableFuture.supplyAsync(
                        () -> Clusters.stub(channel).moeForward(Clusters.request(0, x, DType.F32)));
                assertThat(gated.awaitEntered()).as("worker-0 received rows").isTrue();
                String dead = cluster.workers().get(0).address();
                cluster.workers().get(0).kill();
                MoeForwardResponse resp = pending.get(60, TimeUnit.SECONDS);
                assertThat(Clusters.relativeError(Clusters.output(resp), reference.forward(0, x).output())).isLessThan(1e-5);
                assertThat(cluster.router().stats().failovers()).isPositive();
                // the failover series names the worker that died, and only it
                Exposition metrics = Exposition.scrape(cluster.router().metricsPort());
                assertThat(metrics.sum("moe_router_failovers_total", s -> s.is("worker", dead)))
                        .isEqualTo(cluster.router().stats().failovers());
                assertThat(metrics.sum("moe_router_failovers_total", s -> !s.is("worker", dead))).isZero();
                // and the cluster keeps serving without worker-0
                FloatMatrix x2 = Clusters.hidden(cfg, 16, 12, DType.F32);
                FloatMatrix y2 = Clusters.output(Clusters.stub(channel).moeForward(Clusters.request(1, x2, DType.F32)));
                assertThat(Clusters.relativeError(y2, reference.forward(1, x2).output())).isLessThan(1e-5);
            } finally {
                gated.release();
                channel.shutdownNow();
            }
        }
    }

    @Test
    void failsFastWithUnavailableNamingTheExpertWhenItsOnlyWorkerDies() throws Exception {
        GatedBackend gated = new GatedBackend();
        var options = LocalCluster.Options.of(dir, 3, 1).withBackends(i -> i == 0 ? gated : new CpuBackend());
        try (LocalCluster cluster = LocalCluster.start(options)) {
            ModelConfig cfg = cluster.model();
            String deadAddress = cluster.workers().get(0).address();
            ManagedChannel channel = Clusters.channel(cluster.router().address());
            try {
                FloatMatrix x = Clusters.hidden(cfg, 64, 13, DType.F32);
                gated.arm();
                CompletableFuture<MoeForwardResponse> pending = CompletableFuture.supplyAsync(
                        () -> Clusters.stub(channel).moeForward(Clusters.request(0, x, DType.F32)));
                assertThat(gated.awaitEntered()).isTrue();
                cluster.workers().get(0).kill();
                assertThatThrownBy(() -> pending.get(60, TimeUnit.SECONDS))
                        .cause()
                        .isInstanceOfSatisfying(StatusRuntimeException.class, e -> {
                            assertThat(e.getStatus().getCode()).isEqualTo(Status.Code.UNAVAILABLE);
                            assertThat(e.getStatus().getDescription())
                                    .containsPattern("expert \\d+ of layer 0 is unavailable")
                                    .contains(deadAddress);
                        });
            } finally {
                gated.release();
                channel.shutdownNow();
            }
        }
    }

    @Test
    void resendsToReplicaWhenWorkerMissesItsDeadline() throws Exception {
        GatedBackend stalled = new GatedBackend();
        var options = LocalCluster.Options.of(dir, 3, 2).withBackends(i -> i == 1 ? stalled : new CpuBackend());
        try (LocalCluster cluster = LocalCluster.start(options);
                ReferenceMoeBlock reference = ReferenceMoeBlock.open(dir)) {
            ModelConfig cfg = cluster.model();
            var rc = RouterConfig.defaults(dir, cluster.placement()).withExpertTimeout(Duration.ofMillis(300));
            try (RouterServer router = RouterServer.start(rc)) {
                stalled.arm();
                FloatMatrix x = Clusters.hidden(cfg, 64, 17, DType.F32);
                FloatMatrix y = call(router.address(), 0, x);
                assertThat(Clusters.relativeError(y, reference.forward(0, x).output())).isLessThan(1e-5);
                assertThat(router.stats().failovers()).isPositive();
            } finally {
                stalled.release();
            }
        }
    }

    private static FloatMatrix call(String address, int layer, FloatMatrix x) {
        ManagedChannel channel = Clusters.channel(address);
        try {
            RouterGrpc.RouterBlockingStub stub = Clusters.stub(channel);
            return Clusters.output(stub.moeForward(Clusters.request(layer, x, DType.F32)));
        } finally {
            channel.shutdownNow();
        }
    }

    /** The placement with only replica {@code r} of every expert kept. */
    private static ExpertPlacement onlyReplica(ExpertPlacement p, int r) {
        Map<Integer, int[][]> layers = new HashMap<>();
        p.layers().forEach((layer, experts) -> {
            int[][] one = new int[experts.length][];
            for (int e = 0; e < experts.length; e++) {
                one[e] = new int[] {experts[e][r]};
            }
            layers.put(layer, one);
        });
        return new ExpertPlacement(p.epoch(), p.workers(), layers);
    }
}
