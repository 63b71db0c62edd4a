package dev.moecluster.cli;

import static org.assertj.core.api.Assertions.assertThat;

import dev.moecluster.core.model.Architecture;
import dev.moecluster.core.model.ModelConfig;
import dev.moecluster.core.model.ModelGenerator;
import dev.moecluster.core.moe.ExpertWeights;
import dev.moecluster.core.moe.ReferenceMoeBlock;
import dev.moecluster.core.runner.DecoderModel;
import dev.moecluster.core.tensor.DType;
import dev.moecluster.core.tensor.FloatMatrix;
import dev.moecluster.proto.GenerateRequest;
import dev.moecluster.proto.MoeForwardResponse;
import dev.moecluster.proto.SamplingParams;
import dev.moecluster.proto.TokenIds;
import dev.moecluster.worker.CpuBackend;
import io.grpc.ManagedChannel;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import org.junit.jupiter.api.Test;

/**
 * An FP8 checkpoint in the layout of Meta's Llama 4 FP8 release (multimodal names, compressed-tensors
 * per-channel e4m3 experts, bf16 elsewhere) served through a real cluster (3 workers, Netty on
 * loopback): MoeForward equals the in-process reference on the dequantized weights, and stays within
 * FP8's precision of the bf16 model the checkpoint was quantized from; Generate gives the in-process
 * model's greedy tokens.
 */
class Fp8CheckpointClusterTest {

    @Test
    void fp8CheckpointServedByAClusterMatchesItsDequantizedAndBf16References() throws Exception {
        ModelGenerator.Spec bf16 = ModelGenerator.Spec.tiny(Architecture.LLAMA4).withDtype(DType.BF16);
        Path fp8Dir = Clusters.model(bf16.withFp8Experts(true));
        Path bf16Dir = Clusters.model(bf16);
        List<CpuBackend> backends = new ArrayList<>();
        LocalCluster.Options options = LocalCluster.Options.of(fp8Dir, 3, 1).withWireDtype(DType.F32)
                .withBackends(i -> {
                    CpuBackend b = new CpuBackend();
                    synchronized (backends) {
                        backends.add(b);
                    }
                    return b;
                });
        try (LocalCluster cluster = LocalCluster.start(options);
                ReferenceMoeBlock dequantized = ReferenceMoeBlock.openDequantized(fp8Dir);
                ReferenceMoeBlock original = ReferenceMoeBlock.open(bf16Dir)) {
            ModelConfig cfg = cluster.model();
            assertThat(cfg.expertDtype()).isEqualTo(DType.FP8_E4M3);
            assertThat(cfg.dtype()).isEqualTo(DType.BF16);
            assertThat(cfg.weightPrefix()).isEqualTo("language_model.model.");
            ManagedChannel channel = Clusters.channel(cluster.router().address());
            try {
                int seed = 0;
                for (int layer : cfg.moeLayerList()) {
                    for (int tokens : new int[] {1, 7, 64}) {
                        FloatMatrix x = Clusters.hidden(cfg, tokens, ++seed, DType.F32);
                        MoeForwardResponse resp = Clusters.stub(channel).moeForward(Clusters.request(layer, x, DType.F32));
                        FloatMatrix y = Clusters.output(resp);
                        ReferenceMoeBlock.Result deq = dequantized.forward(layer, x);
                        ReferenceMoeBlock.Result orig = original.forward(layer, x);
                        assertThat(Clusters.relativeError(y, deq.output()))
                                .as("layer %d, %d tokens against the dequantized reference", layer, tokens)
                                .isLessThan(1e-5);
                        assertThat(Clusters.relativeError(y, orig.output()))
                                .as("layer %d, %d tokens against the bf16 model", layer, tokens)
                                .isLessThan(0.05)
                                .isGreaterThan(1e-4);
                        // The gate is bf16 in both checkpoints: the same experts are chosen.
                        assertThat(resp.getSelectedExpertsList())
                                .containsExactlyElementsOf(Arrays.stream(orig.gate().experts()).boxed().toList());
                    }
                }
                assertThat(cluster.workers()).allSatisfy(w -> assertThat(w.batchesServed()).isPositive());
                // Each worker holds its experts at one byte a weight plus a scale per row.
                long perExpert = ExpertWeights.byteSize(DType.FP8_E4M3, cfg.hiddenSize(), cfg.expertIntermediateSize());
                assertThat(perExpert).isEqualTo(3L * 64 * 128 + 4L * (2 * 128 + 64));
                assertThat(backends).hasSize(3).allSatisfy(b -> assertThat(b.memory().usedBytes())
                        .isEqualTo(b.memory().experts() * perExpert));
                assertThat(backends.stream().mapToInt(b -> b.memory().experts()).sum()).isEqualTo(cfg.numExperts());

                // Generate reads the dense half from the multimodal names and gives the in-process model's tokens.
                try (DecoderModel reference = DecoderModel.open(fp8Dir)) {
                    int[] prompt = {3, 41, 97, 12, 250, 7, 64};
                    GenerateRequest request = GenerateRequest.newBuilder()
                            .setTokenIds(TokenIds.newBuilder().addAllIds(Arrays.stream(prompt).boxed().toList()))
                            .setSampling(SamplingParams.newBuilder().setMaxTokens(10).setTemperature(0f).setIgnoreEos(true))
                            .build();
                    GenerateClusterTest.Generated g = GenerateClusterTest.collect(Clusters.stub(channel).generate(request));
                    int[] expected = reference.generateGreedy(prompt, 10, DType.BF16);
                    assertThat(g.ids()).hasSize(10).containsExactlyElementsOf(Arrays.stream(expected).boxed().toList());
                }
            } finally {
                channel.shutdownNow();
            }
        }
    }
}
