package dev.moecluster.cli;

import dev.moecluster.bench.MoeForwardLoad;
import dev.moecluster.core.model.ModelConfig;
import dev.moecluster.core.moe.ReferenceMoeBlock;
import dev.moecluster.core.tensor.DType;
import dev.moecluster.proto.RouterGrpc;
import dev.moecluster.worker.ExpertBackends;
import io.grpc.ManagedChannel;
import io.grpc.netty.shaded.io.grpc.netty.NettyChannelBuilder;
import java.io.PrintStream;
import java.nio.file.Path;
import java.util.Locale;
import java.util.concurrent.Callable;
import java.util.concurrent.TimeUnit;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

/**
 * {@code moe demo}: the one-command tour. Starts a local cluster on the built-in model, checks
 * MoeForward results against the in-process reference, drives load, and prints expert load,
 * worker and wire tables. Exits non-zero if results disagree with the reference.
 */
@Command(name = "demo", mixinStandardHelpOptions = true,
        description = "Start a local cluster on a built-in model, verify MoeForward against the in-process reference, drive load and print expert load and throughput.")
final class DemoCommand implements Callable<Integer> {
    @Mixin
    ModelOptions model;

    @Option(names = "--workers", defaultValue = "3", description = "Expert workers (default: ${DEFAULT-VALUE}).")
    int workers;

    @Option(names = "--replicas", defaultValue = "2", description = "Workers per expert (default: ${DEFAULT-VALUE}).")
    int replicas;

    @Option(names = "--requests", defaultValue = "300", description = "MoeForward calls in the load phase (default: ${DEFAULT-VALUE}).")
    int requests;

    @Option(names = "--verify", defaultValue = "24", description = "Calls checked against the reference first (default: ${DEFAULT-VALUE}).")
    int verify;

    @Option(names = "--tokens", defaultValue = "64", description = "Tokens per call (default: ${DEFAULT-VALUE}).")
    int tokens;

    @Option(names = "--concurrency", defaultValue = "4", description = "Calls in flight (default: ${DEFAULT-VALUE}).")
    int concurrency;

    @Option(names = "--backend", defaultValue = "cpu", description = "Workers' compute backend: cpu, cuda or auto (default: ${DEFAULT-VALUE}).")
    String backend;

    @Option(names = "--http-port", defaultValue = "0",
            description = "Router's OpenAI-compatible HTTP API port; 0 picks a free one, -1 serves none (default: ${DEFAULT-VALUE}).")
    int httpPort;

    @Option(names = "--prompt", defaultValue = "Once upon a time", description = "Prompt for the generation part (default: ${DEFAULT-VALUE}).")
    String prompt;

    @Override
    public Integer call() throws Exception {
        PrintStream out = System.out;
        Path dir = model.resolve();
        out.println("moe-cluster demo");
        try (LocalCluster cluster = LocalCluster.start(LocalCluster.Options.of(dir, workers, replicas)
                        .withBackends(i -> ExpertBackends.create(backend, "auto"))
                .withCoordinator(true)
                .withRouterSettings(rc -> rc.withHttpPort(httpPort)));
                ReferenceMoeBlock reference = ReferenceMoeBlock.open(dir)) {
            ModelConfig cfg = cluster.model();
            DType dtype = cfg.dtype();
            String dtypeName = dtype.name().toLowerCase(Locale.ROOT);
            out.printf("  model    %s: %s, MoE layers %s x %d experts, top-%d, hidden %d, %s%n", cfg.name(),
                    cfg.architecture().hfName(), cfg.moeLayerList(), cfg.numExperts(), cfg.expertsPerToken(),
                    cfg.hiddenSize(), dtypeName);
            out.printf("  cluster  %d workers, %d replica(s) per expert, router on %s, %s activations on the wire%n",
                    cluster.workers().size(), replicas, cluster.router().address(),
                    cluster.router().wireDtype().name().toLowerCase(Locale.ROOT));
            if (cluster.router().httpUrl() != null) {
                out.printf("  http     OpenAI-compatible API on %s (model \"%s\")%n", cluster.router().httpUrl(), cfg.name());
            }
            ManagedChannel channel = NettyChannelBuilder.forTarget(cluster.router().address()).usePlaintext().build();
            try {
                RouterGrpc.RouterBlockingStub stub = RouterGrpc.newBlockingStub(channel);
                MoeForwardLoad load = new MoeForwardLoad(cfg, reference);
                double limit = dtype == DType.F32 && cluster.router().wireDtype() == DType.F32 ? 1e-5 : 1e-2;
                MoeForwardLoad.Report checked = load.runAgainst(stub,
                        new MoeForwardLoad.Options(verify, tokens, 1, dtype, 1, true));
                boolean ok = checked.maxRelativeError() < limit;
                out.printf("  verify   %d calls vs the in-process reference: max relative error %.2e (limit %.0e)  %s%n",
                        checked.verified(), checked.maxRelativeError(), limit, ok ? "OK" : "MISMATCH");
                MoeForwardLoad.Report r = load.runAgainst(stub,
                        new MoeForwardLoad.Options(requests, tokens, concurrency, dtype, 2, false));
                out.println("  " + ClusterReport.throughput("load", r) + String.format("   (%d in flight)", concurrency));
                out.println();
                ClusterReport.expertLoad(out, cluster.router().stats(), cfg.numExperts());
                out.println();
                ClusterReport.workers(out, cluster.workers());
                out.println();
                ClusterReport.wire(out, cluster.router().stats(), cfg.hiddenSize(), cluster.router().wireDtype().name().toLowerCase(Locale.ROOT),
                        cluster.router().wireDtype().byteSize());
                out.println();
                generateText(out, channel, cfg.name());
                out.println();
                boolean httpOk = cluster.router().httpUrl() == null || chatOverHttp(out, cluster.router().httpUrl(), cfg.name());
                out.println();
                out.println(!ok ? "demo FAILED: results differ from the reference"
                        : !httpOk ? "demo FAILED: the OpenAI-compatible API did not answer"
                        : "demo OK: every checked result matched the reference");
                return ok && httpOk ? 0 : 1;
            } finally {
                channel.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
            }
        }
    }

    /** One chat completion through the OpenAI-compatible API, as any OpenAI client would send it; false unless it answers 200. */
    private boolean chatOverHttp(PrintStream out, String url, String model) throws Exception {
        com.google.gson.JsonObject message = new com.google.gson.JsonObject();
        message.addProperty("role", "user");
        message.addProperty("content", prompt);
        com.google.gson.JsonArray messages = new com.google.gson.JsonArray();
        messages.add(message);
        com.google.gson.JsonObject body = new com.google.gson.JsonObject();
        body.addProperty("model", model);
        body.add("messages", messages);
        body.addProperty("max_tokens", 16);
        body.addProperty("temperature", 0);
        java.net.http.HttpResponse<String> response = java.net.http.HttpClient.newHttpClient().send(
                java.net.http.HttpRequest.newBuilder(java.net.URI.create(url + "/chat/completions"))
                        .header("Content-Type", "application/json")
                        .POST(java.net.http.HttpRequest.BodyPublishers.ofString(body.toString())).build(),
                java.net.http.HttpResponse.BodyHandlers.ofString());
        out.println("OpenAI-compatible API (POST " + url + "/chat/completions):");
        if (response.statusCode() != 200) {
            out.printf("  HTTP %d: %s%n", response.statusCode(), response.body());
            return false;
        }
        com.google.gson.JsonObject answer = com.google.gson.JsonParser.parseString(response.body()).getAsJsonObject();
        com.google.gson.JsonObject choice = answer.getAsJsonArray("choices").get(0).getAsJsonObject();
        out.printf("  reply    %s%n", printable(choice.getAsJsonObject("message").get("content").getAsString()));
        out.printf("  finish   %s, usage %s%n", choice.get("finish_reason").getAsString(), answer.getAsJsonObject("usage"));
        return true;
    }

    /** The text with control characters and undecodable bytes shown as a middle dot. */
    static String printable(String s) {
        StringBuilder b = new StringBuilder(s.length());
        s.codePoints().forEach(c -> b.appendCodePoint(Character.isISOControl(c) || c == 0xFFFD ? 0xB7 : c));
        return b.toString();
    }

    /** Generates from the prompt through the cluster and four concurrent streams, printing text and tokens/s. */
    private void generateText(PrintStream out, ManagedChannel channel, String name) throws Exception {
        var stub = RouterGrpc.newBlockingStub(channel).withDeadlineAfter(5, TimeUnit.MINUTES);
        var request = dev.moecluster.proto.GenerateRequest.newBuilder().setModel(name).setText(prompt)
                .setSampling(dev.moecluster.proto.SamplingParams.newBuilder().setMaxTokens(24).setTemperature(0f)).build();
        StringBuilder text = new StringBuilder();
        int tokens = 0;
        long start = System.nanoTime();
        var stream = stub.generate(request);
        while (stream.hasNext()) {
            var r = stream.next();
            text.append(r.getText());
            tokens += r.getTokenIdsCount();
        }
        double single = tokens / ((System.nanoTime() - start) / 1e9);
        int streams = 4;
        long t0 = System.nanoTime();
        var futures = new java.util.ArrayList<java.util.concurrent.CompletableFuture<Integer>>();
        for (int i = 0; i < streams; i++) {
            var req = request.toBuilder().setSampling(request.getSampling().toBuilder().setTemperature(0.8f).setSeed(i)).build();
            futures.add(java.util.concurrent.CompletableFuture.supplyAsync(() -> {
                int n = 0;
                var it = stub.generate(req);
                while (it.hasNext()) {
                    n += it.next().getTokenIdsCount();
                }
                return n;
            }));
        }
        int total = 0;
        for (var f : futures) {
            total += f.get();
        }
        double batched = total / ((System.nanoTime() - t0) / 1e9);
        out.println("Generate (random weights, so the text is noise; the path is real):");
        out.printf("  prompt   %s%n", prompt);
        out.printf("  output   %s%n", printable(text.toString()));
        out.printf("  %d tokens at %.1f tokens/s alone; %d streams batched together: %.1f tokens/s%n", tokens, single,
                streams, batched);
    }
}
