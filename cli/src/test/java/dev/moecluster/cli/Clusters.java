package dev.moecluster.cli;

import dev.moecluster.core.model.Architecture;
import dev.moecluster.core.model.ModelConfig;
import dev.moecluster.core.model.ModelGenerator;
import dev.moecluster.core.tensor.DType;
import dev.moecluster.core.tensor.FloatMatrix;
import dev.moecluster.control.wire.WireTensors;
import dev.moecluster.proto.GenerateRequest;
import dev.moecluster.proto.MoeForwardRequest;
import dev.moecluster.proto.MoeForwardResponse;
import dev.moecluster.proto.RouterGrpc;
import dev.moecluster.proto.SamplingParams;
import dev.moecluster.proto.TokenIds;
import io.grpc.ManagedChannel;
import io.grpc.netty.shaded.io.grpc.netty.NettyChannelBuilder;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.TimeUnit;

/** Shared helpers for the cluster tests: generated models, clients, inputs. */
final class Clusters {
    private static final Path ROOT;
    private static final ConcurrentHashMap<String, Path> MODELS = new ConcurrentHashMap<>();

    static {
        try {
            ROOT = Files.createTempDirectory("moe-cluster-test-models");
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    private Clusters() {}

    /** A tiny f32 model of {@code arch} (hidden 64, 8 experts, 2 layers), generated once per JVM. */
    static Path tinyModel(Architecture arch) {
        return model(ModelGenerator.Spec.tiny(arch));
    }

    static Path model(ModelGenerator.Spec spec) {
        return MODELS.computeIfAbsent(spec.toString(), k -> {
            try {
                Path dir = ROOT.resolve(spec.architecture().cliName() + "-" + MODELS.size());
                ModelGenerator.generate(spec, dir);
                return dir;
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
        });
    }

    /**
     * {@code count} coordinators in this JVM that list each other as members (one Hazelcast cluster),
     * started in order, so the first is the oldest; the caller closes them.
     */
    static List<dev.moecluster.coordinator.CoordinatorServer> coordinators(Path model, int count) throws IOException {
        String name = "moe-coordinators-" + java.util.UUID.randomUUID();
        List<Integer> ports = new java.util.ArrayList<>();
        for (int i = 0; i < count; i++) {
            ports.add(LocalCluster.freePort());
        }
        List<String> members = ports.stream().map(p -> "127.0.0.1:" + p).toList();
        List<dev.moecluster.coordinator.CoordinatorServer> out = new java.util.ArrayList<>();
        for (int port : ports) {
            out.add(dev.moecluster.coordinator.CoordinatorServer.start(
                    dev.moecluster.coordinator.CoordinatorConfig.local(name, port, model, 1, 1).withMembers(members, port)));
        }
        return out;
    }

    static ManagedChannel channel(String address) {
        return NettyChannelBuilder.forTarget(address).usePlaintext().build();
    }

    static RouterGrpc.RouterBlockingStub stub(ManagedChannel channel) {
        return RouterGrpc.newBlockingStub(channel).withDeadlineAfter(60, TimeUnit.SECONDS);
    }

    /** Random hidden states {@code tokens × hidden}, exactly representable in {@code dtype}. */
    static FloatMatrix hidden(ModelConfig config, int tokens, long seed, DType dtype) {
        SplittableRandom r = new SplittableRandom(seed);
        float[] v = new float[tokens * config.hiddenSize()];
        for (int i = 0; i < v.length; i++) {
            v[i] = (float) r.nextGaussian();
        }
        return WireTensors.decode(WireTensors.encode(v, 0, tokens, config.hiddenSize(), dtype), "input");
    }

    static MoeForwardRequest request(int layer, FloatMatrix x, DType dtype) {
        return MoeForwardRequest.newBuilder().setLayer(layer).setHiddenStates(WireTensors.encode(x, dtype)).build();
    }

    static FloatMatrix output(MoeForwardResponse response) {
        return WireTensors.decode(response.getOutput(), "output");
    }

    /** {@code calls} MoeForward calls of {@code tokens} random f32 rows each on {@code layer}, through the router. */
    static void moeForwardCalls(LocalCluster cluster, int layer, int calls, int tokens) {
        ManagedChannel channel = channel(cluster.router().address());
        try {
            for (int i = 0; i < calls; i++) {
                FloatMatrix x = hidden(cluster.model(), tokens, i, DType.F32);
                stub(channel).moeForward(request(layer, x, DType.F32));
            }
        } finally {
            channel.shutdownNow();
        }
    }

    /** One greedy Generate stream of exactly {@code maxTokens} tokens (EOS ignored), read to its end. */
    static void generateGreedy(LocalCluster cluster, List<Integer> promptIds, int maxTokens) {
        ManagedChannel channel = channel(cluster.router().address());
        try {
            GenerateRequest req = GenerateRequest.newBuilder()
                    .setTokenIds(TokenIds.newBuilder().addAllIds(promptIds))
                    .setSampling(SamplingParams.newBuilder().setMaxTokens(maxTokens).setTemperature(0f).setIgnoreEos(true))
                    .build();
            stub(channel).generate(req).forEachRemaining(r -> { });
        } finally {
            channel.shutdownNow();
        }
    }

    /** ‖a − b‖₂ / ‖b‖₂. */
    static double relativeError(FloatMatrix a, FloatMatrix b) {
        return dev.moecluster.bench.MoeForwardLoad.relativeError(a, b);
    }

    /**
     * A coordinated local cluster of the tiny Mixtral with {@code workers} workers after MoeForward calls
     * on every MoE layer and a Generate stream, so every series the components export has samples.
     */
    static LocalCluster coordinatedWithTraffic(int workers) throws Exception {
        LocalCluster cluster = LocalCluster.start(LocalCluster.Options.of(tinyModel(Architecture.MIXTRAL), workers, 1)
                .withCoordinator(true));
        try {
            for (int layer : cluster.model().moeLayerList()) {
                moeForwardCalls(cluster, layer, 3, 5);
            }
            generateGreedy(cluster, List.of(1, 2, 3), 4);
            return cluster;
        } catch (Exception | Error e) {
            cluster.close();
            throw e;
        }
    }
}
