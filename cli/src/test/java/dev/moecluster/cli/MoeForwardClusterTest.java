package dev.moecluster.cli;

import static org.assertj.core.api.Assertions.assertThat;

import dev.moecluster.core.model.Architecture;
import dev.moecluster.core.model.ModelConfig;
import dev.moecluster.core.model.ModelGenerator;
import dev.moecluster.core.moe.ReferenceMoeBlock;
import dev.moecluster.core.tensor.DType;
import dev.moecluster.core.tensor.FloatMatrix;
import dev.moecluster.proto.GetModelInfoRequest;
import dev.moecluster.proto.ModelInfo;
import dev.moecluster.proto.MoeForwardResponse;
import io.grpc.ManagedChannel;
import java.nio.file.Path;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * MoeForward through a real cluster (3 workers, Netty on loopback) equals the in-process reference
 * for every architecture, with f32 and with bf16 / fp8 activations on the wire.
 */
class MoeForwardClusterTest {

    @ParameterizedTest
    @EnumSource(value = Architecture.class, names = {"MIXTRAL", "QWEN3_MOE", "QWEN2_MOE", "LLAMA4"})
    void clusterMatchesReferenceWithF32OnTheWire(Architecture arch) throws Exception {
        Path dir = Clusters.tinyModel(arch);
        try (LocalCluster cluster = LocalCluster.start(LocalCluster.Options.of(dir, 3, 1));
                ReferenceMoeBlock reference = ReferenceMoeBlock.open(dir)) {
            ModelConfig cfg = cluster.model();
            assertThat(cluster.router().wireDtype()).isEqualTo(DType.F32);
            ManagedChannel channel = Clusters.channel(cluster.router().address());
            try {
                int seed = 0;
                for (int layer : cfg.moeLayerList()) {
                    for (int tokens : new int[] {1, 7, 64}) {
                        FloatMatrix x = Clusters.hidden(cfg, tokens, ++seed, DType.F32);
                        MoeForwardResponse resp = Clusters.stub(channel).moeForward(Clusters.request(layer, x, DType.F32));
                        ReferenceMoeBlock.Result ref = reference.forward(layer, x);
                        FloatMatrix y = Clusters.output(resp);
                        assertThat(y.rows()).isEqualTo(tokens);
                        assertThat(y.cols()).isEqualTo(cfg.hiddenSize());
                        assertThat(Clusters.relativeError(y, ref.output()))
                                .as("%s layer %d, %d tokens", arch, layer, tokens)
                                .isLessThan(1e-5);
                        assertThat(resp.getSelectedExpertsList())
                                .containsExactlyElementsOf(java.util.Arrays.stream(ref.gate().experts()).boxed().toList());
                    }
                }
                // every worker took part: experts really were spread over the cluster
                assertThat(cluster.workers()).allSatisfy(w -> assertThat(w.batchesServed()).isPositive());
            } finally {
                channel.shutdownNow();
            }
        }
    }

    @ParameterizedTest
    @EnumSource(value = Architecture.class, names = {"MIXTRAL", "QWEN3_MOE", "LLAMA4"})
    void clusterMatchesReferenceWithBf16OnTheWire(Architecture arch) throws Exception {
        Path dir = Clusters.tinyModel(arch);
        try (LocalCluster cluster = LocalCluster.start(LocalCluster.Options.of(dir, 3, 1).withWireDtype(DType.BF16));
                ReferenceMoeBlock reference = ReferenceMoeBlock.open(dir)) {
            ModelConfig cfg = cluster.model();
            ManagedChannel channel = Clusters.channel(cluster.router().address());
            try {
                for (int layer : cfg.moeLayerList()) {
                    FloatMatrix x = Clusters.hidden(cfg, 32, layer + 100, DType.BF16);
                    FloatMatrix y = Clusters.output(Clusters.stub(channel).moeForward(Clusters.request(layer, x, DType.BF16)));
                    double err = Clusters.relativeError(y, reference.forward(layer, x).output());
                    assertThat(err).as("%s layer %d", arch, layer).isLessThan(1e-2).isGreaterThan(0.0);
                }
                // bf16 halves the bytes: hidden x 2 bytes per routed row each way, plus a small header
                long rows = cluster.router().stats().rows();
                double perRow = (cluster.router().stats().bytesSent() + cluster.router().stats().bytesReceived()) / (double) rows;
                assertThat(perRow).isBetween(2.0 * cfg.hiddenSize() * 2, 2.0 * cfg.hiddenSize() * 2 + 64);
            } finally {
                channel.shutdownNow();
            }
        }
    }

    @org.junit.jupiter.api.Test
    void fp8ActivationsOnTheWireStayCloseToReference() throws Exception {
        Path dir = Clusters.tinyModel(Architecture.MIXTRAL);
        try (LocalCluster cluster = LocalCluster.start(LocalCluster.Options.of(dir, 3, 1).withWireDtype(DType.FP8_E4M3));
                ReferenceMoeBlock reference = ReferenceMoeBlock.open(dir)) {
            ModelConfig cfg = cluster.model();
            ManagedChannel channel = Clusters.channel(cluster.router().address());
            try {
                FloatMatrix x = Clusters.hidden(cfg, 32, 5, DType.F32);
                FloatMatrix y = Clusters.output(Clusters.stub(channel).moeForward(Clusters.request(0, x, DType.F32)));
                assertThat(Clusters.relativeError(y, reference.forward(0, x).output())).isLessThan(0.1);
                long rows = cluster.router().stats().rows();
                // the outbound direction carries one byte per value plus a 4-byte scale per row
                assertThat(cluster.router().stats().bytesSent() / (double) rows).isLessThan(cfg.hiddenSize() + 40);
            } finally {
                channel.shutdownNow();
            }
        }
    }

    @org.junit.jupiter.api.Test
    void shardedBf16CheckpointServesAndDescribesItself() throws Exception {
        Path dir = Clusters.model(ModelGenerator.Spec.tiny(Architecture.QWEN3_MOE).withDtype(DType.BF16).withShards(3));
        try (LocalCluster cluster = LocalCluster.start(LocalCluster.Options.of(dir, 4, 2));
                ReferenceMoeBlock reference = ReferenceMoeBlock.open(dir)) {
            ModelConfig cfg = cluster.model();
            assertThat(cluster.router().wireDtype()).isEqualTo(DType.BF16);
            ManagedChannel channel = Clusters.channel(cluster.router().address());
            try {
                ModelInfo info = Clusters.stub(channel).getModelInfo(GetModelInfoRequest.getDefaultInstance());
                assertThat(info.getArchitecture()).isEqualTo("Qwen3MoeForCausalLM");
                assertThat(info.getHiddenSize()).isEqualTo(64);
                assertThat(info.getNumExperts()).isEqualTo(8);
                assertThat(info.getExpertsPerToken()).isEqualTo(2);
                assertThat(info.getDtype()).isEqualTo(dev.moecluster.proto.DType.BF16);
                FloatMatrix x = Clusters.hidden(cfg, 16, 77, DType.BF16);
                FloatMatrix y = Clusters.output(Clusters.stub(channel).moeForward(Clusters.request(1, x, DType.BF16)));
                assertThat(Clusters.relativeError(y, reference.forward(1, x).output())).isLessThan(1e-2);
            } finally {
                channel.shutdownNow();
            }
        }
    }
}
