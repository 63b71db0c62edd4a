package dev.moecluster.cli;

import static java.nio.charset.StandardCharsets.UTF_8;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.within;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import dev.moecluster.control.BearerToken;
import dev.moecluster.core.model.Architecture;
import dev.moecluster.core.model.ModelGenerator;
import dev.moecluster.proto.FinishReason;
import dev.moecluster.proto.GenerateRequest;
import dev.moecluster.proto.SamplingParams;
import dev.moecluster.proto.TokenIds;
import dev.moecluster.router.openai.ChatTemplate;
import dev.moecluster.router.generate.TextTokenizer;
import io.grpc.ManagedChannel;
import java.io.IOException;
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
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

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
            GenerateClusterTest.Generated grpc = grpcGreedy(cluster, GenerateRequest.newBuilder().setText(PROMPT), 12, true);
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

            // chat: the model's template renders the messages; the same prompt ids through gRPC give the same text
            assertThat(out.getAsJsonObject("chat_refusal").get("status").getAsInt()).isEqualTo(200);
            JsonObject chat = out.getAsJsonObject("chat");
            List<Map<String, Object>> messages = List.of(Map.of("role", "system", "content", "You are terse."),
                    Map.of("role", "user", "content", PROMPT));
            int[] chatPrompt = tokenizer.encode(ChatTemplate.load(dir).render(messages, true), false);
            GenerateClusterTest.Generated grpcChat = grpcGreedy(cluster, GenerateRequest.newBuilder()
                    .setTokenIds(TokenIds.newBuilder().addAllIds(Arrays.stream(chatPrompt).boxed().toList())), 8, false);
            assertThat(chat.get("object").getAsString()).isEqualTo("chat.completion");
            assertThat(chat.get("role").getAsString()).isEqualTo("assistant");
            assertThat(chat.get("content").getAsString()).isEqualTo(grpcChat.text());
            assertThat(chat.get("finish_reason").getAsString())
                    .isEqualTo(grpcChat.last().getFinishReason() == FinishReason.FINISH_REASON_LENGTH ? "length" : "stop");
            assertThat(chat.getAsJsonObject("usage").get("prompt_tokens").getAsInt()).isEqualTo(chatPrompt.length);
            JsonObject chatStreamed = out.getAsJsonObject("chat_streamed");
            assertThat(chatStreamed.get("content").getAsString()).isEqualTo(chat.get("content").getAsString());
            assertThat(chatStreamed.get("role").getAsString()).isEqualTo("assistant");
            assertThat(chatStreamed.get("finish_reason").getAsString()).isEqualTo(chat.get("finish_reason").getAsString());

            // logprobs: the model's log-softmax, the same through gRPC; greedy tokens are the most likely ones
            JsonObject lp = out.getAsJsonObject("logprobs");
            List<Integer> lpIds = ints(lp.getAsJsonArray("token_ids"));
            GenerateClusterTest.Generated grpcLp = collectWithLogprobs(cluster, SamplingParams.newBuilder().setMaxTokens(6)
                    .setTemperature(0f).setIgnoreEos(true).setLogprobs(true).setTopLogprobs(2));
            assertThat(lpIds).isEqualTo(grpcLp.ids()).isEqualTo(grpc.ids().subList(0, 6));
            JsonArray tokenLogprobs = lp.getAsJsonObject("logprobs").getAsJsonArray("token_logprobs");
            JsonArray topLogprobs = lp.getAsJsonObject("logprobs").getAsJsonArray("top_logprobs");
            assertThat(tokenLogprobs).hasSize(6);
            for (int i = 0; i < 6; i++) {
                double value = tokenLogprobs.get(i).getAsDouble();
                assertThat(value).isLessThanOrEqualTo(0).isCloseTo(grpcLogprobs.get(i), within(1e-5));
                JsonObject top = topLogprobs.get(i).getAsJsonObject();
                assertThat(top.size()).isBetween(1, 2);
                double best = top.entrySet().stream().mapToDouble(e -> e.getValue().getAsDouble()).max().orElseThrow();
                assertThat(value).isCloseTo(best, within(1e-6));
            }
            // penalties: the same tokens as gRPC Generate with the same penalties
            JsonObject penalized = out.getAsJsonObject("penalized").getAsJsonArray("choices").get(0).getAsJsonObject();
            assertThat(ints(penalized.getAsJsonArray("token_ids"))).isEqualTo(collectWithLogprobs(cluster, SamplingParams.newBuilder()
                    .setMaxTokens(12).setTemperature(0f).setIgnoreEos(true).setPresencePenalty(1.5f).setFrequencyPenalty(1f)
                    .setRepetitionPenalty(1.3f)).ids());
            JsonObject chatLogprobs = out.getAsJsonObject("chat_logprobs");
            JsonArray chatContent = chatLogprobs.getAsJsonArray("content");
            assertThat(chatContent).hasSize(chatLogprobs.get("completion_tokens").getAsInt());
            chatContent.forEach(e -> {
                assertThat(e.getAsJsonObject().get("logprob").getAsDouble()).isLessThanOrEqualTo(0);
                assertThat(e.getAsJsonObject().getAsJsonArray("top_logprobs")).hasSize(2);
            });

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
                    s -> s.is("api", "openai") && s.is("method", "completions") && s.is("code", "OK"))).isEqualTo(6);
            assertThat(metrics.sum("moe_router_requests_total",
                    s -> s.is("api", "openai") && s.is("code", "UNAUTHENTICATED"))).isEqualTo(1);
            assertThat(metrics.sum("moe_router_requests_total",
                    s -> s.is("api", "grpc") && s.is("method", "Generate") && s.is("code", "OK"))).isEqualTo(4);
            assertThat(metrics.sum("moe_router_requests_total",
                    s -> s.is("api", "openai") && s.is("method", "chat.completions") && s.is("code", "OK"))).isEqualTo(3);
        }
    }

    /** Without the Python client: the wire format itself, and the refusals of a model that has no chat template. */
    @Test
    void rawHttpStreamsServerSentEventsAndRefusesChatWithoutATemplate(@TempDir Path tmp) throws Exception {
        Path dir = tmp.resolve("no-template");
        ModelGenerator.generate(ModelGenerator.Spec.tiny(Architecture.MIXTRAL), dir);
        Files.delete(dir.resolve("tokenizer_config.json"));
        // a KV-cache budget of 512 KiB (bf16 blocks): a few tokens fit, a request for 4000 cannot
        try (LocalCluster cluster = LocalCluster.start(LocalCluster.Options.of(dir, 2, 1)
                .withRouterSettings(rc -> rc.withHttpPort(0)
                        .withGeneration(rc.generation().withKvCacheBudgetBytes(1 << 19))))) {
            String url = cluster.router().httpUrl();
            String model = cluster.model().name();
            HttpClient http = HttpClient.newHttpClient();

            HttpResponse<String> chat = post(http, url + "/chat/completions",
                    "{\"model\": \"" + model + "\", \"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}");
            assertThat(chat.statusCode()).isEqualTo(400);
            JsonObject error = JsonParser.parseString(chat.body()).getAsJsonObject().getAsJsonObject("error");
            assertThat(error.get("message").getAsString()).contains("has no chat template");
            assertThat(error.get("type").getAsString()).isEqualTo("invalid_request_error");
            assertThat(error.get("param").getAsString()).isEqualTo("messages");

            HttpResponse<String> stream = post(http, url + "/completions", "{\"model\": \"" + model
                    + "\", \"prompt\": [5, 6, 7], \"max_tokens\": 4, \"temperature\": 0, \"ignore_eos\": true,"
                    + " \"stream\": true, \"return_token_ids\": true}");
            assertThat(stream.statusCode()).isEqualTo(200);
            assertThat(stream.headers().firstValue("Content-Type")).hasValueSatisfying(v -> assertThat(v).startsWith("text/event-stream"));
            List<String> events = stream.body().lines().filter(l -> !l.isEmpty()).toList();
            assertThat(events).allSatisfy(l -> assertThat(l).startsWith("data: "));
            assertThat(events.getLast()).isEqualTo("data: [DONE]");
            List<Integer> streamedIds = new ArrayList<>();
            for (String event : events.subList(0, events.size() - 1)) {
                JsonObject chunk = JsonParser.parseString(event.substring("data: ".length())).getAsJsonObject();
                assertThat(chunk.get("object").getAsString()).isEqualTo("text_completion");
                chunk.getAsJsonArray("choices").get(0).getAsJsonObject().getAsJsonArray("token_ids")
                        .forEach(id -> streamedIds.add(id.getAsInt()));
            }
            assertThat(streamedIds).isEqualTo(grpcGreedy(cluster, GenerateRequest.newBuilder()
                    .setTokenIds(TokenIds.newBuilder().addAllIds(List.of(5, 6, 7))), 4, true).ids());

            assertThat(post(http, url + "/completions", "{not json").statusCode()).isEqualTo(400);
            assertThat(post(http, url + "/completions", "{\"prompt\": [999999], \"max_tokens\": 2}").body())
                    .contains("outside the vocabulary");
            assertThat(post(http, url + "/embeddings", "{}").statusCode()).isEqualTo(404);
            HttpResponse<String> get = http.send(HttpRequest.newBuilder(URI.create(url + "/completions")).GET().build(),
                    HttpResponse.BodyHandlers.ofString());
            assertThat(get.statusCode()).isEqualTo(405);
            HttpResponse<String> one = http.send(HttpRequest.newBuilder(URI.create(url + "/models/" + model)).GET().build(),
                    HttpResponse.BodyHandlers.ofString());
            assertThat(JsonParser.parseString(one.body()).getAsJsonObject().get("id").getAsString()).isEqualTo(model);
            assertThat(cluster.router().decoder().kvBytesPerToken(dev.moecluster.core.tensor.DType.BF16) * 4003L).isGreaterThan(1 << 19);
            HttpResponse<String> tooBig = post(http, url + "/completions",
                    "{\"prompt\": [5, 6, 7], \"max_tokens\": 4000, \"ignore_eos\": true}");
            assertThat(tooBig.statusCode()).isEqualTo(429);
            assertThat(tooBig.body()).contains("KV cache", "rate_limit_error");
            // the server keeps serving after every refusal
            HttpResponse<String> after = post(http, url + "/completions",
                    "{\"prompt\": [5, 6, 7], \"max_tokens\": 2, \"temperature\": 0}");
            assertThat(after.statusCode()).isEqualTo(200);
            assertThat(JsonParser.parseString(after.body()).getAsJsonObject().getAsJsonObject("usage")
                    .get("prompt_tokens").getAsInt()).isEqualTo(3);
        }
    }

    private static HttpResponse<String> post(HttpClient http, String url, String body) throws Exception {
        return http.send(HttpRequest.newBuilder(URI.create(url)).header("Content-Type", "application/json")
                .POST(HttpRequest.BodyPublishers.ofString(body)).build(), HttpResponse.BodyHandlers.ofString());
    }

    /** The log-probabilities the last {@link #collectWithLogprobs} stream carried, per token. */
    private final List<Double> grpcLogprobs = new ArrayList<>();

    /** A Generate stream of {@link #PROMPT} with {@code sampling}, its log-probabilities kept in {@link #grpcLogprobs}. */
    private GenerateClusterTest.Generated collectWithLogprobs(LocalCluster cluster, SamplingParams.Builder sampling) {
        ManagedChannel channel = Clusters.channel(cluster.router().address());
        try {
            var stream = Clusters.stub(channel).withCallCredentials(BearerToken.of(TOKEN).callCredentials())
                    .generate(GenerateRequest.newBuilder().setText(PROMPT).setSampling(sampling).build());
            List<Integer> ids = new ArrayList<>();
            grpcLogprobs.clear();
            dev.moecluster.proto.GenerateResponse last = null;
            while (stream.hasNext()) {
                last = stream.next();
                ids.addAll(last.getTokenIdsList());
                last.getLogprobsList().forEach(l -> grpcLogprobs.add((double) l.getLogprob()));
            }
            if (sampling.getLogprobs()) {
                assertThat(grpcLogprobs).hasSameSizeAs(ids);
            }
            return new GenerateClusterTest.Generated(ids, last, "");
        } finally {
            channel.shutdownNow();
        }
    }

    private static GenerateClusterTest.Generated grpcGreedy(LocalCluster cluster, GenerateRequest.Builder prompt, int maxTokens,
            boolean ignoreEos) {
        ManagedChannel channel = Clusters.channel(cluster.router().address());
        try {
            GenerateRequest request = prompt
                    .setSampling(SamplingParams.newBuilder().setMaxTokens(maxTokens).setTemperature(0f).setIgnoreEos(ignoreEos))
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
