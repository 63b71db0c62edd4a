package dev.moecluster.router.openai;

import static java.nio.charset.StandardCharsets.UTF_8;
import static java.util.Objects.requireNonNull;

import com.google.gson.Gson;
import com.google.gson.GsonBuilder;
import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonNull;
import com.google.gson.JsonObject;
import com.google.gson.JsonParseException;
import com.google.gson.JsonParser;
import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import com.sun.net.httpserver.HttpsConfigurator;
import com.sun.net.httpserver.HttpsParameters;
import com.sun.net.httpserver.HttpsServer;
import dev.moecluster.control.BearerToken;
import dev.moecluster.control.TlsConfig;
import dev.moecluster.proto.FinishReason;
import dev.moecluster.proto.GenerateRequest;
import dev.moecluster.proto.GenerateResponse;
import dev.moecluster.proto.SamplingParams;
import dev.moecluster.proto.TokenIds;
import dev.moecluster.proto.TokenLogprob;
import dev.moecluster.router.generate.GenerationScheduler;
import dev.moecluster.router.generate.TextTokenizer;
import io.grpc.Status;
import java.io.IOException;
import java.io.OutputStream;
import java.net.BindException;
import java.net.InetSocketAddress;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.UUID;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.logging.Level;
import java.util.logging.Logger;
import javax.net.ssl.SSLContext;
import javax.net.ssl.SSLParameters;

/**
 * The router's OpenAI-compatible HTTP API: {@code GET /v1/models}, {@code POST /v1/completions} and
 * {@code POST /v1/chat/completions}, answered whole or streamed as server-sent events. Requests go to
 * the same {@link GenerationScheduler} as gRPC {@code Generate}, so both APIs share one batch, one set
 * of limits and one set of metrics. Served by the JDK's {@code com.sun.net.httpserver} (the server the
 * {@code /metrics} endpoints already use), one virtual thread per exchange, on the gRPC port's host,
 * with its TLS files and bearer tokens.
 */
public final class OpenAiServer implements AutoCloseable {
    private static final Logger LOG = Logger.getLogger(OpenAiServer.class.getName());
    private static final Gson GSON = new GsonBuilder().serializeNulls().disableHtmlEscaping().create();
    private static final String BEARER = "Bearer ";
    /** Seconds {@link #close()} lets exchanges still writing (their error or last chunk) finish. */
    private static final int STOP_DELAY_SECONDS = 1;

    /** What the API serves: the model's name (its id in {@code /v1/models}), context and text tools. */
    public record ServedModel(String name, int contextLength, TextTokenizer tokenizer, ChatTemplate chatTemplate) {
        public ServedModel {
            requireNonNull(name, "name is null");
        }
    }

    /** Counts a finished call: method ({@code models}, {@code completions}, {@code chat.completions}) and gRPC code. */
    @FunctionalInterface
    public interface CallCounter {
        void count(String method, String code);
    }

    private final HttpServer server;
    private final ExecutorService executor;
    private final GenerationScheduler scheduler;
    private final ServedModel model;
    private final BearerToken token;
    private final int maxBodyBytes;
    private final CallCounter counter;
    private final long created = System.currentTimeMillis() / 1000;
    private final AtomicInteger inHandler = new AtomicInteger();
    private volatile boolean stopping;

    private OpenAiServer(HttpServer server, ExecutorService executor, GenerationScheduler scheduler, ServedModel model,
            BearerToken token, int maxBodyBytes, CallCounter counter) {
        this.server = server;
        this.executor = executor;
        this.scheduler = scheduler;
        this.model = model;
        this.token = token;
        this.maxBodyBytes = maxBodyBytes;
        this.counter = counter;
    }

    /**
     * Serves on {@code host:port} (0 picks a free port); over TLS when {@code tls} is given (client
     * certificates required when it has a CA), requiring one of {@code token}'s tokens when given.
     *
     * @throws IOException naming the address when the port cannot be bound
     */
    public static OpenAiServer start(String host, int port, TlsConfig tls, BearerToken token, GenerationScheduler scheduler,
            ServedModel model, int maxBodyBytes, CallCounter counter) throws IOException {
        requireNonNull(scheduler, "scheduler is null");
        requireNonNull(model, "model is null");
        requireNonNull(counter, "counter is null");
        InetSocketAddress address = new InetSocketAddress(host, port);
        HttpServer server;
        try {
            if (tls == null) {
                server = HttpServer.create(address, 0);
            } else {
                HttpsServer https = HttpsServer.create(address, 0);
                SSLContext context = tls.serverSslContext();
                boolean mutual = tls.requiresClientCertificates();
                https.setHttpsConfigurator(new HttpsConfigurator(context) {
                    @Override
                    public void configure(HttpsParameters params) {
                        SSLParameters p = context.getDefaultSSLParameters();
                        p.setNeedClientAuth(mutual);
                        params.setSSLParameters(p);
                    }
                });
                server = https;
            }
        } catch (BindException e) {
            throw new IOException("cannot serve the OpenAI-compatible HTTP API on " + host + ":" + port + ": "
                    + e.getMessage() + " (choose another --http-port, or -1 for none)", e);
        }
        ExecutorService executor = Executors.newThreadPerTaskExecutor(Thread.ofVirtual().name("moe-openai-", 0).factory());
        server.setExecutor(executor);
        OpenAiServer api = new OpenAiServer(server, executor, scheduler, model, token, maxBodyBytes, counter);
        server.createContext("/", api::handle);
        server.start();
        return api;
    }

    /** The port served on. */
    public int port() {
        return server.getAddress().getPort();
    }

    /** New requests get 503 from now on; those already taken go on. */
    public void stopAccepting() {
        stopping = true;
    }

    /** Requests between arrival and being handed to the scheduler (what a graceful stop must also wait for). */
    public int callsInHandler() {
        return inHandler.get();
    }

    @Override
    public void close() {
        stopping = true;
        server.stop(STOP_DELAY_SECONDS);
        executor.shutdownNow();
    }

    private void handle(HttpExchange exchange) {
        String path = exchange.getRequestURI().getPath();
        String method = switch (path) {
            case "/v1/completions" -> "completions";
            case "/v1/chat/completions" -> "chat.completions";
            default -> path.equals("/v1/models") || path.startsWith("/v1/models/") ? "models" : "unknown";
        };
        // counted until the scheduler has the request (or it is refused), as RouterService counts gRPC calls
        inHandler.incrementAndGet();
        AtomicBoolean handedOver = new AtomicBoolean();
        Runnable handOver = () -> {
            if (handedOver.compareAndSet(false, true)) {
                inHandler.decrementAndGet();
            }
        };
        Status.Code code = Status.Code.OK;
        try {
            if (stopping) {
                throw OpenAiError.unavailable("router is shutting down; retry on another router");
            }
            authorize(exchange);
            switch (method) {
                case "models" -> models(exchange, path);
                case "completions" -> {
                    requirePost(exchange, path);
                    code = generate(exchange, OpenAiRequest.completion(body(exchange)), false, handOver);
                }
                case "chat.completions" -> {
                    requirePost(exchange, path);
                    code = generate(exchange, OpenAiRequest.chat(body(exchange)), true, handOver);
                }
                default -> throw OpenAiError.notFound("no such endpoint: " + exchange.getRequestMethod() + " " + path
                        + " (this server has GET /v1/models, POST /v1/completions, POST /v1/chat/completions)");
            }
        } catch (OpenAiError e) {
            code = e.grpcCode();
            reply(exchange, e);
        } catch (IOException e) {
            code = Status.Code.CANCELLED; // the client went away while we read or wrote
        } catch (RuntimeException e) {
            LOG.log(Level.WARNING, "OpenAI API request " + path + " failed", e);
            code = Status.Code.INTERNAL;
            reply(exchange, new OpenAiError(500, "server_error", null, null, Status.Code.INTERNAL, "request failed: " + e));
        } finally {
            handOver.run();
            exchange.close();
            counter.count(method, code.name());
        }
    }

    /** Sends the error unless the answer has begun (a stream reports failures inside itself). */
    private static void reply(HttpExchange exchange, OpenAiError e) {
        if (exchange.getResponseCode() != -1) {
            return;
        }
        try {
            if (e.httpStatus() == 401) {
                exchange.getResponseHeaders().set("WWW-Authenticate", "Bearer");
            }
            sendJson(exchange, e.httpStatus(), e.toJson());
        } catch (IOException gone) {
            // nothing more to tell a client that is gone
        }
    }

    private void authorize(HttpExchange exchange) {
        if (token == null) {
            return;
        }
        String value = exchange.getRequestHeaders().getFirst("Authorization");
        if (value == null) {
            throw OpenAiError.unauthorized("missing bearer token: send 'Authorization: Bearer TOKEN'");
        }
        if (!(value.regionMatches(true, 0, BEARER, 0, BEARER.length()) && token.matches(value.substring(BEARER.length()).strip()))) {
            throw OpenAiError.unauthorized("invalid bearer token");
        }
    }

    private static void requirePost(HttpExchange exchange, String path) {
        if (!exchange.getRequestMethod().equals("POST")) {
            throw OpenAiError.methodNotAllowed(exchange.getRequestMethod(), path, "POST");
        }
    }

    private JsonObject body(HttpExchange exchange) throws IOException {
        byte[] bytes = exchange.getRequestBody().readNBytes(maxBodyBytes + 1);
        if (bytes.length > maxBodyBytes) {
            throw new OpenAiError(413, "invalid_request_error", null, "request_too_large", Status.Code.RESOURCE_EXHAUSTED,
                    "request body is larger than " + maxBodyBytes + " bytes");
        }
        JsonElement json;
        try {
            json = JsonParser.parseString(new String(bytes, UTF_8));
        } catch (JsonParseException e) {
            throw OpenAiError.badRequest(null, "request body is not valid JSON: " + e.getMessage());
        }
        if (!json.isJsonObject()) {
            throw OpenAiError.badRequest(null, "request body must be a JSON object");
        }
        return json.getAsJsonObject();
    }

    private void models(HttpExchange exchange, String path) throws IOException {
        if (!exchange.getRequestMethod().equals("GET")) {
            throw OpenAiError.methodNotAllowed(exchange.getRequestMethod(), path, "GET");
        }
        JsonObject entry = new JsonObject();
        entry.addProperty("id", model.name());
        entry.addProperty("object", "model");
        entry.addProperty("created", created);
        entry.addProperty("owned_by", "moe-cluster");
        entry.addProperty("max_model_len", model.contextLength());
        if (path.equals("/v1/models")) {
            JsonObject list = new JsonObject();
            list.addProperty("object", "list");
            JsonArray data = new JsonArray();
            data.add(entry);
            list.add("data", data);
            sendJson(exchange, 200, list);
        } else if (path.substring("/v1/models/".length()).equals(model.name())) {
            sendJson(exchange, 200, entry);
        } else {
            throw unknownModel(path.substring("/v1/models/".length()));
        }
    }

    private OpenAiError unknownModel(String name) {
        return new OpenAiError(404, "invalid_request_error", "model", "model_not_found", Status.Code.NOT_FOUND,
                "model '" + name + "' is not served here (this router serves '" + model.name() + "')");
    }

    /** The prompts of a request as the scheduler takes them, chat messages rendered by the model's template. */
    private List<GenerateRequest.Builder> prompts(OpenAiRequest request, boolean chat) {
        List<GenerateRequest.Builder> out = new ArrayList<>();
        if (chat) {
            if (model.chatTemplate() == null) {
                throw OpenAiError.badRequest("messages", "model '" + model.name() + "' has no chat template (no chat_template"
                        + " in tokenizer_config.json and no chat_template.jinja): use /v1/completions with a prompt");
            }
            if (model.tokenizer() == null) {
                throw OpenAiError.badRequest("messages", "model '" + model.name() + "' has no tokenizer.json: chat needs one");
            }
            String rendered;
            try {
                rendered = model.chatTemplate().render(request.messages(), true, request.templateVariables());
            } catch (IllegalArgumentException e) {
                throw OpenAiError.badRequest("messages", e.getMessage());
            }
            // the template writes the special tokens (BOS and the like) itself, so none are added again
            int[] ids = model.tokenizer().encode(rendered, false);
            out.add(GenerateRequest.newBuilder().setTokenIds(ids(ids)));
        } else {
            for (OpenAiRequest.Prompt p : request.prompts()) {
                out.add(p.text() != null ? GenerateRequest.newBuilder().setText(p.text())
                        : GenerateRequest.newBuilder().setTokenIds(ids(p.tokenIds())));
            }
        }
        return out;
    }

    private static TokenIds ids(int[] ids) {
        return TokenIds.newBuilder().addAllIds(Arrays.stream(ids).boxed().toList()).build();
    }

    /** One choice's generation as it accumulates. */
    private static final class Choice {
        final StringBuilder text = new StringBuilder();
        final List<Integer> tokenIds = new ArrayList<>();
        final List<TokenLogprob> logprobs = new ArrayList<>();
        FinishReason finish;
        int promptTokens;
        int completionTokens;
    }

    /** Answers a generation request; returns the status a stream ended with (its failure is in the stream). */
    private Status.Code generate(HttpExchange exchange, OpenAiRequest request, boolean chat, Runnable handOver)
            throws IOException {
        if (!request.model().isEmpty() && !request.model().equals(model.name())) {
            throw unknownModel(request.model());
        }
        List<GenerateRequest.Builder> prompts = prompts(request, chat);
        int n = request.n();
        Choice[] choices = new Choice[prompts.size() * n];
        ChoiceEvents events = new ChoiceEvents();
        List<ChoiceEvents.Event> early = new ArrayList<>();
        try {
            for (int p = 0; p < prompts.size(); p++) {
                for (int i = 0; i < n; i++) {
                    int index = p * n + i;
                    choices[index] = new Choice();
                    SamplingParams sampling = request.sampling();
                    if (sampling.hasSeed() && i > 0) {
                        // one seed, n different samples: choice i draws from seed + i
                        sampling = sampling.toBuilder().setSeed(sampling.getSeed() + i).build();
                    }
                    scheduler.submit(prompts.get(p).setModel(model.name()).setSampling(sampling).build(), events.observer(index));
                    // refusals (bad parameters, queue or KV budget full) arrive during submit, before any header is sent
                    for (ChoiceEvents.Event e; (e = events.poll()) != null; ) {
                        if (e.error() != null) {
                            throw OpenAiError.of(e.error());
                        }
                        early.add(e);
                    }
                }
            }
        } catch (RuntimeException e) {
            events.abandon();
            throw e;
        } finally {
            handOver.run();
        }
        String id = (chat ? "chatcmpl-" : "cmpl-") + UUID.randomUUID().toString().replace("-", "");
        long createdAt = System.currentTimeMillis() / 1000;
        if (request.stream()) {
            return stream(exchange, request, chat, choices, events, early, id, createdAt);
        }
        whole(exchange, request, chat, choices, events, early, id, createdAt);
        return Status.Code.OK;
    }

    private static void record(Choice c, GenerateResponse r) {
        c.text.append(r.getText());
        c.tokenIds.addAll(r.getTokenIdsList());
        c.logprobs.addAll(r.getLogprobsList());
        if (r.getFinishReasonValue() != 0) {
            c.finish = r.getFinishReason();
            c.promptTokens = r.getUsage().getPromptTokens();
            c.completionTokens = r.getUsage().getCompletionTokens();
        }
    }

    private void whole(HttpExchange exchange, OpenAiRequest request, boolean chat, Choice[] choices, ChoiceEvents events,
            List<ChoiceEvents.Event> early, String id, long createdAt) throws IOException {
        int open = choices.length;
        int next = 0;
        while (open > 0) {
            ChoiceEvents.Event e;
            try {
                e = next < early.size() ? early.get(next++) : events.take();
            } catch (InterruptedException interrupted) {
                Thread.currentThread().interrupt();
                events.abandon();
                throw OpenAiError.unavailable("router is shutting down");
            }
            if (e.error() != null) {
                events.abandon();
                throw OpenAiError.of(e.error());
            }
            record(choices[e.index()], e.response());
            if (e.ends()) {
                open--;
            }
        }
        JsonObject body = envelope(id, chat ? "chat.completion" : "text_completion", createdAt);
        JsonArray array = new JsonArray();
        for (int i = 0; i < choices.length; i++) {
            Choice c = choices[i];
            JsonObject choice = new JsonObject();
            choice.addProperty("index", i);
            if (chat) {
                JsonObject message = new JsonObject();
                message.addProperty("role", "assistant");
                message.addProperty("content", c.text.toString());
                choice.add("message", message);
            } else {
                choice.addProperty("text", c.text.toString());
            }
            choice.add("logprobs", request.sampling().getLogprobs() ? logprobs(c.logprobs, chat) : JsonNull.INSTANCE);
            choice.addProperty("finish_reason", finishReason(c.finish));
            if (request.returnTokenIds()) {
                choice.add("token_ids", GSON.toJsonTree(c.tokenIds));
            }
            array.add(choice);
        }
        body.add("choices", array);
        body.add("usage", usage(choices, request.n()));
        sendJson(exchange, 200, body);
    }

    private Status.Code stream(HttpExchange exchange, OpenAiRequest request, boolean chat, Choice[] choices, ChoiceEvents events,
            List<ChoiceEvents.Event> early, String id, long createdAt) throws IOException {
        Status.Code outcome = Status.Code.OK;
        exchange.getResponseHeaders().set("Content-Type", "text/event-stream; charset=utf-8");
        exchange.getResponseHeaders().set("Cache-Control", "no-cache");
        exchange.sendResponseHeaders(200, 0); // chunked: the length is not known yet
        OutputStream out = exchange.getResponseBody();
        String object = chat ? "chat.completion.chunk" : "text_completion";
        try {
            if (chat) {
                for (int i = 0; i < choices.length; i++) {
                    JsonObject delta = new JsonObject();
                    delta.addProperty("role", "assistant");
                    delta.addProperty("content", "");
                    send(out, chunk(id, object, createdAt, request, choiceChunk(i, delta, null, true, null, request)));
                }
            }
            int open = choices.length;
            int next = 0;
            while (open > 0) {
                ChoiceEvents.Event e;
                try {
                    e = next < early.size() ? early.get(next++) : events.take();
                } catch (InterruptedException interrupted) {
                    Thread.currentThread().interrupt();
                    e = new ChoiceEvents.Event(0, null,
                            Status.UNAVAILABLE.withDescription("router is shutting down").asRuntimeException());
                }
                if (e.error() != null) {
                    // headers are out: the failure goes in the stream, as vLLM sends it
                    events.abandon();
                    OpenAiError failure = OpenAiError.of(e.error());
                    outcome = failure.grpcCode();
                    send(out, failure.toJson());
                    break;
                }
                GenerateResponse r = e.response();
                record(choices[e.index()], r);
                boolean ends = e.ends();
                if (ends) {
                    open--;
                }
                boolean tokensToReport = (request.returnTokenIds() || request.sampling().getLogprobs()) && r.getTokenIdsCount() > 0;
                if (r.getText().isEmpty() && !ends && !tokensToReport) {
                    continue; // text held back (a partial character or a possible stop string): nothing to say yet
                }
                JsonElement piece;
                if (chat) {
                    JsonObject delta = new JsonObject();
                    if (!r.getText().isEmpty()) {
                        delta.addProperty("content", r.getText());
                    }
                    piece = delta;
                } else {
                    piece = new com.google.gson.JsonPrimitive(r.getText());
                }
                JsonObject choiceChunk = choiceChunk(e.index(), piece, ends ? finishReason(r.getFinishReason()) : null, chat,
                        r.getTokenIdsList(), request);
                if (request.sampling().getLogprobs()) {
                    choiceChunk.add("logprobs", logprobs(r.getLogprobsList(), chat));
                }
                send(out, chunk(id, object, createdAt, request, choiceChunk));
            }
            if (open == 0 && request.includeUsage()) {
                JsonObject last = envelope(id, object, createdAt);
                last.add("choices", new JsonArray());
                last.add("usage", usage(choices, request.n()));
                send(out, last);
            }
            out.write("data: [DONE]\n\n".getBytes(UTF_8));
            out.flush();
            return outcome;
        } catch (IOException e) {
            events.abandon(); // the client went away: its sequences stop at their next token
            throw e;
        }
    }

    /**
     * Log-probabilities in OpenAI's shape: chat {@code {"content": [{token, logprob, bytes, top_logprobs}]}},
     * completions {@code {tokens, token_logprobs, top_logprobs, text_offset}}. Token text is each id decoded
     * alone (a piece of a multi-byte character shows as U+FFFD; {@code bytes} are its UTF-8).
     */
    private JsonObject logprobs(List<TokenLogprob> logprobs, boolean chat) {
        JsonObject out = new JsonObject();
        if (chat) {
            JsonArray content = new JsonArray();
            for (TokenLogprob lp : logprobs) {
                JsonObject entry = tokenEntry(lp.getTokenId(), lp.getLogprob());
                JsonArray top = new JsonArray();
                lp.getTopList().forEach(t -> top.add(tokenEntry(t.getTokenId(), t.getLogprob())));
                entry.add("top_logprobs", top);
                content.add(entry);
            }
            out.add("content", content);
            return out;
        }
        JsonArray tokens = new JsonArray();
        JsonArray values = new JsonArray();
        JsonArray tops = new JsonArray();
        JsonArray offsets = new JsonArray();
        int offset = 0;
        for (TokenLogprob lp : logprobs) {
            String text = tokenText(lp.getTokenId());
            tokens.add(text);
            values.add(lp.getLogprob());
            JsonObject top = new JsonObject();
            lp.getTopList().forEach(t -> top.addProperty(tokenText(t.getTokenId()), t.getLogprob()));
            tops.add(top);
            offsets.add(offset);
            offset += text.length();
        }
        out.add("tokens", tokens);
        out.add("token_logprobs", values);
        out.add("top_logprobs", tops);
        out.add("text_offset", offsets);
        return out;
    }

    private JsonObject tokenEntry(int tokenId, float logprob) {
        String text = tokenText(tokenId);
        JsonObject entry = new JsonObject();
        entry.addProperty("token", text);
        entry.addProperty("logprob", logprob);
        JsonArray bytes = new JsonArray();
        for (byte b : text.getBytes(UTF_8)) {
            bytes.add(b & 0xff);
        }
        entry.add("bytes", bytes);
        return entry;
    }

    private String tokenText(int tokenId) {
        return model.tokenizer() == null ? "token_id:" + tokenId : model.tokenizer().tokenText(tokenId);
    }

    private static JsonObject choiceChunk(int index, JsonElement piece, String finish, boolean chat, List<Integer> tokenIds,
            OpenAiRequest request) {
        JsonObject choice = new JsonObject();
        choice.addProperty("index", index);
        choice.add(chat ? "delta" : "text", piece);
        choice.add("logprobs", JsonNull.INSTANCE);
        choice.addProperty("finish_reason", finish);
        if (request.returnTokenIds() && tokenIds != null) {
            choice.add("token_ids", GSON.toJsonTree(tokenIds));
        }
        return choice;
    }

    private JsonObject chunk(String id, String object, long createdAt, OpenAiRequest request, JsonObject choice) {
        JsonObject chunk = envelope(id, object, createdAt);
        JsonArray choices = new JsonArray();
        choices.add(choice);
        chunk.add("choices", choices);
        if (request.includeUsage()) {
            chunk.add("usage", JsonNull.INSTANCE); // as OpenAI: null on every chunk but the last
        }
        return chunk;
    }

    private JsonObject envelope(String id, String object, long createdAt) {
        JsonObject body = new JsonObject();
        body.addProperty("id", id);
        body.addProperty("object", object);
        body.addProperty("created", createdAt);
        body.addProperty("model", model.name());
        return body;
    }

    /** Prompt tokens once per prompt (not per choice, as OpenAI counts), completion tokens of every choice. */
    private static JsonObject usage(Choice[] choices, int n) {
        int prompt = 0;
        int completion = 0;
        for (int i = 0; i < choices.length; i++) {
            if (i % n == 0) {
                prompt += choices[i].promptTokens;
            }
            completion += choices[i].completionTokens;
        }
        JsonObject usage = new JsonObject();
        usage.addProperty("prompt_tokens", prompt);
        usage.addProperty("completion_tokens", completion);
        usage.addProperty("total_tokens", prompt + completion);
        return usage;
    }

    private static String finishReason(FinishReason r) {
        return r == FinishReason.FINISH_REASON_LENGTH ? "length" : r == FinishReason.FINISH_REASON_STOP ? "stop" : null;
    }

    private static void send(OutputStream out, JsonObject event) throws IOException {
        out.write(("data: " + GSON.toJson(event) + "\n\n").getBytes(UTF_8));
        out.flush();
    }

    private static void sendJson(HttpExchange exchange, int status, JsonObject body) throws IOException {
        byte[] bytes = GSON.toJson(body).getBytes(UTF_8);
        exchange.getResponseHeaders().set("Content-Type", "application/json");
        exchange.sendResponseHeaders(status, bytes.length);
        exchange.getResponseBody().write(bytes);
    }
}
