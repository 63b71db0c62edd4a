package dev.moecluster.cli;

import static java.nio.charset.StandardCharsets.UTF_8;
import static org.assertj.core.api.Assertions.assertThat;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import dev.moecluster.control.BearerToken;
import dev.moecluster.core.model.Architecture;
import dev.moecluster.proto.GenerateRequest;
import dev.moecluster.proto.SamplingParams;
import dev.moecluster.router.generate.TextTokenizer;
import io.grpc.ManagedChannel;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;

/**
 * The official OpenAI Python client ({@code openai} package) against a local cluster's HTTP API: the
 * same scheduler as gRPC {@code Generate}, so the same greedy request gives the same tokens either way.
 * The client runs in {@code $MOE_TEST_PYTHON} (the venv .ci/run makes) or {@code python3}; where neither
 * has the package the test is skipped, saying so.
 */
class OpenAiClusterTest {
    private static final String TOKEN = "openai-test-token";
    private static final String PROMPT = "Once upon a time";
    private static final Path SCRIPT = Path.of("src/test/python/openai_client_check.py");

    @Test
    void officialClientCompletionsMatchGrpcGenerateAndRefusalsHaveOpenAiStatuses() throws Exception {
        String python = pythonWithOpenAi();
        Path dir = Clusters.tinyModel(Architecture.LLAMA4);
        try (LocalCluster cluster = LocalCluster.start(LocalCluster.Options.of(dir, 2, 1)
                        .withRouterSettings(rc -> rc.withHttpPort(0).withAuthToken(BearerToken.of(TOKEN))));
                TextTokenizer tokenizer = TextTokenizer.load(dir)) {
            String model = cluster.model().name();
            JsonObject out = runClient(python, cluster.router().httpUrl(), model);
            int promptTokens = tokenizer.encode(PROMPT).length;

            assertThat(strings(out.getAsJsonArray("models"))).containsExactly(model);

            // the same greedy request through gRPC Generate
            GenerateClusterTest.Generated grpc = grpcGreedy(cluster, 12);
            assertThat(grpc.ids()).hasSize(12);

            JsonObject greedy = out.getAsJsonObject("greedy");
            JsonObject choice = greedy.getAsJsonArray("choices").get(0).getAsJsonObject();
            assertThat(greedy.get("object").getAsString()).isEqualTo("text_completion");
            assertThat(greedy.get("model").getAsString()).isEqualTo(model);
            assertThat(ints(choice.getAsJsonArray("token_ids"))).isEqualTo(grpc.ids());
            assertThat(choice.get("text").getAsString()).isEqualTo(grpc.text());
            assertThat(choice.get("finish_reason").getAsString()).isEqualTo("length");
            assertThat(greedy.getAsJsonObject("usage").get("prompt_tokens").getAsInt()).isEqualTo(promptTokens);
            assertThat(greedy.getAsJsonObject("usage").get("completion_tokens").getAsInt()).isEqualTo(12);
            assertThat(greedy.getAsJsonObject("usage").get("total_tokens").getAsInt()).isEqualTo(promptTokens + 12);

            JsonObject streamed = out.getAsJsonObject("streamed");
            assertThat(streamed.get("text").getAsString()).isEqualTo(grpc.text());
            assertThat(ints(streamed.getAsJsonArray("token_ids"))).isEqualTo(grpc.ids());
            assertThat(streamed.get("finish_reason").getAsString()).isEqualTo("length");
            assertThat(streamed.getAsJsonObject("usage")).isEqualTo(greedy.getAsJsonObject("usage"));
            assertThat(streamed.get("chunks").getAsInt()).isGreaterThan(2); // text chunks, then the usage chunk

            JsonObject n2 = out.getAsJsonObject("n2");
            JsonArray n2Choices = n2.getAsJsonArray("choices");
            assertThat(n2Choices).hasSize(2);
            assertThat(n2Choices.get(0).getAsJsonObject().get("index").getAsInt()).isZero();
            assertThat(n2Choices.get(1).getAsJsonObject().get("index").getAsInt()).isEqualTo(1);
            assertThat(n2.getAsJsonObject("usage").get("prompt_tokens").getAsInt()).isEqualTo(promptTokens); // once, not per choice
            assertThat(n2.getAsJsonObject("usage").get("completion_tokens").getAsInt()).isBetween(2, 16);

            JsonObject stop = out.getAsJsonObject("stop");
            List<String> stops = strings(stop.getAsJsonArray("stops"));
            assertThat(stops).hasSize(2); // the greedy text is long enough to take a stop string from
            JsonObject stopped = stop.getAsJsonArray("choices").get(0).getAsJsonObject();
            assertThat(stopped.get("text").getAsString()).isEqualTo(grpc.text().substring(0, grpc.text().indexOf(stops.get(1))));
            assertThat(stopped.get("finish_reason").getAsString()).isEqualTo("stop");

            JsonObject chat = out.getAsJsonObject("chat_refusal");
            assertThat(chat.get("status").getAsInt()).isEqualTo(400);
            assertThat(chat.get("message").getAsString()).contains("has no chat template");

            JsonObject wrongToken = out.getAsJsonObject("wrong_token");
            assertThat(wrongToken.get("status").getAsInt()).isEqualTo(401);
            assertThat(wrongToken.get("error_class").getAsString()).isEqualTo("AuthenticationError");
            JsonObject unknownModel = out.getAsJsonObject("unknown_model");
            assertThat(unknownModel.get("status").getAsInt()).isEqualTo(404);
            assertThat(unknownModel.get("code").getAsString()).isEqualTo("model_not_found");
            assertThat(unknownModel.get("message").getAsString()).contains("no-such-model", model);
            JsonObject badParameter = out.getAsJsonObject("bad_parameter");
            assertThat(badParameter.get("status").getAsInt()).isEqualTo(400);
            assertThat(badParameter.get("message").getAsString()).contains("temperature");

            Exposition metrics = Exposition.scrape(cluster.router().metricsPort());
            // greedy, streamed, n=2 and stop: four completions, counted under the OpenAI API
            assertThat(metrics.sum("moe_router_requests_total",
                    s -> s.is("api", "openai") && s.is("method", "completions") && s.is("code", "OK"))).isEqualTo(4);
            assertThat(metrics.sum("moe_router_requests_total",
                    s -> s.is("api", "openai") && s.is("code", "UNAUTHENTICATED"))).isEqualTo(1);
            assertThat(metrics.sum("moe_router_requests_total",
                    s -> s.is("api", "grpc") && s.is("method", "Generate") && s.is("code", "OK"))).isEqualTo(1);
        }
    }

    private static GenerateClusterTest.Generated grpcGreedy(LocalCluster cluster, int maxTokens) {
        ManagedChannel channel = Clusters.channel(cluster.router().address());
        try {
            GenerateRequest request = GenerateRequest.newBuilder().setText(PROMPT)
                    .setSampling(SamplingParams.newBuilder().setMaxTokens(maxTokens).setTemperature(0f).setIgnoreEos(true))
                    .build();
            return GenerateClusterTest.collect(Clusters.stub(channel)
                    .withCallCredentials(BearerToken.of(TOKEN).callCredentials()).generate(request));
        } finally {
            channel.shutdownNow();
        }
    }

    /** Runs the client script and returns what it printed. */
    static JsonObject runClient(String python, String baseUrl, String model) throws Exception {
        Process p = new ProcessBuilder(python, SCRIPT.toString(), baseUrl, TOKEN, model, PROMPT).start();
        CompletableFuture<String> stderr = CompletableFuture.supplyAsync(() -> read(p.getErrorStream()));
        String stdout = read(p.getInputStream());
        assertThat(p.waitFor(5, TimeUnit.MINUTES)).as("the client script finished").isTrue();
        assertThat(p.exitValue()).as("client script failed:%n%s", stderr.get()).isZero();
        return JsonParser.parseString(stdout).getAsJsonObject();
    }

    private static String read(java.io.InputStream in) {
        try (in) {
            return new String(in.readAllBytes(), UTF_8);
        } catch (IOException e) {
            return "(unreadable: " + e + ")";
        }
    }

    /**
     * {@code $MOE_TEST_PYTHON} or {@code python3}, when it can import {@code openai}; otherwise the test is
     * skipped with the reason (run .ci/run, or point MOE_TEST_PYTHON at a python with the package).
     */
    static String pythonWithOpenAi() throws InterruptedException {
        String python = System.getenv().getOrDefault("MOE_TEST_PYTHON", "python3");
        String problem;
        try {
            Process p = new ProcessBuilder(python, "-c", "import openai").redirectErrorStream(true).start();
            String output = read(p.getInputStream());
            problem = p.waitFor(60, TimeUnit.SECONDS) && p.exitValue() == 0 ? null : output.strip();
        } catch (IOException e) {
            problem = e.getMessage();
        }
        Assumptions.assumeTrue(problem == null, "skipped: " + python + " cannot import the openai package (" + problem
                + "); .ci/run makes a venv with it and sets MOE_TEST_PYTHON");
        assertThat(Files.exists(SCRIPT)).as("%s exists (tests run from the cli module)", SCRIPT).isTrue();
        return python;
    }

    private static List<String> strings(JsonArray a) {
        List<String> out = new ArrayList<>();
        a.forEach(e -> out.add(e.getAsString()));
        return out;
    }

    private static List<Integer> ints(JsonArray a) {
        List<Integer> out = new ArrayList<>();
        for (JsonElement e : a) {
            out.add(e.getAsInt());
        }
        return out;
    }
}
