package dev.moecluster.router;

import static java.util.Objects.requireNonNull;

import dev.moecluster.control.ControlClient;
import dev.moecluster.control.GrpcEndpoint;
import java.util.List;
import dev.moecluster.control.MetricsEndpoint;
import dev.moecluster.core.kernel.Gemm;
import dev.moecluster.core.model.Checkpoint;
import dev.moecluster.core.model.ModelConfig;
import dev.moecluster.core.runner.DecoderModel;
import dev.moecluster.core.tensor.DType;
import dev.moecluster.router.generate.GenerationScheduler;
import dev.moecluster.router.generate.TextTokenizer;
import dev.moecluster.router.openai.ChatTemplate;
import dev.moecluster.router.openai.OpenAiServer;
import com.google.gson.JsonElement;
import com.google.gson.JsonParser;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Set;
import java.util.TreeSet;
import dev.moecluster.control.BearerToken;
import dev.moecluster.control.TlsConfig;
import io.grpc.ServerInterceptors;
import io.grpc.ServerServiceDefinition;
import java.io.IOException;
import java.time.Duration;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.logging.Logger;

/**
 * A running router: loads the dense part of the model (embeddings, attention, norms, gates, shared
 * experts, LM head), connects to the workers of the placement, and serves the public
 * {@code moe.v1.Router} API ({@code MoeForward}, {@code Generate}) with gRPC health and reflection.
 * Readiness is SERVING once the model is loaded and a placement is known (static: at once; with
 * coordinators: once the first published placement arrived) and NOT_SERVING while it stops;
 * {@link #shutdown} is its graceful stop.
 */
public final class RouterServer implements AutoCloseable {
    private static final Logger LOG = Logger.getLogger(RouterServer.class.getName());
    private static final long SHUTDOWN_POLL_MILLIS = 50;
    private static final long SHUTDOWN_PROGRESS_MILLIS = 5000;

    private final RouterConfig config;
    private final ModelConfig model;
    private final Checkpoint checkpoint;
    private final MoeDispatcher dispatcher;
    private final PlacementFollower follower;
    private final DispatchStats stats = new DispatchStats();
    private final DType wireDtype;
    private final DecoderModel decoder;
    private final TextTokenizer tokenizer;
    private final GenerationScheduler scheduler;
    private final RouterService service;
    private final GrpcEndpoint server;
    private final MetricsEndpoint metrics;
    /** The OpenAI-compatible HTTP API, or null when {@code httpPort} is -1. */
    private final OpenAiServer http;
    /** Guards readiness against a placement arriving while the router stops. */
    private final Object lifecycle = new Object();
    private boolean stopping;
    private final AtomicBoolean closed = new AtomicBoolean();

    private RouterServer(RouterConfig config, ModelConfig model, Checkpoint checkpoint, MetricsEndpoint metrics)
            throws IOException {
        this.config = config;
        this.metrics = metrics;
        this.model = model;
        this.checkpoint = checkpoint;
        if (config.controlPlane() == null) {
            config.placement().requireCovers(model);
        }
        this.wireDtype = config.wireDtype() != null ? config.wireDtype() : model.dtype();
        this.dispatcher = new MoeDispatcher(config.placement(), config.maxInboundMessageBytes(), wireDtype,
                config.expertTimeout(), stats, config.dataPlane().channelCredentials(TlsConfig.channelCredentials(config.tls())),
                config.channelsPerWorker());
        RemoteMoeBlock moe = new RemoteMoeBlock(model, checkpoint, dispatcher);
        this.decoder = DecoderModel.load(model, checkpoint, moe);
        this.tokenizer = Files.exists(config.modelDir().resolve("tokenizer.json")) ? TextTokenizer.load(config.modelDir()) : null;
        this.scheduler = new GenerationScheduler(decoder, tokenizer, config.generation(), model.name(), contextLength(model),
                eosTokens(config.modelDir(), model));
        var requests = RouterMetrics.register(metrics.registry(), stats, scheduler, () -> dispatcher.placement().epoch());
        this.service = new RouterService(model, moe, config.maxTokensPerRequest(), config.maxTokensInFlight(), scheduler);
        this.server = GrpcEndpoint.start(config.host(), config.port(), config.maxInboundMessageBytes(), List.of(
                publicApi(service, config.authToken())), config.tls(), config.healthPort(), requests.grpcCalls());
        try {
            this.http = config.httpPort() == RouterConfig.NO_HTTP_PORT ? null : OpenAiServer.start(config.host(),
                    config.httpPort(), config.tls(), config.authToken(), scheduler,
                    new OpenAiServer.ServedModel(model.name(), contextLength(model), tokenizer,
                            ChatTemplate.load(config.modelDir())),
                    config.maxInboundMessageBytes(), (method, code) -> requests.count("openai", method, code));
        } catch (IOException | RuntimeException e) {
            server.close();
            scheduler.close();
            dispatcher.close();
            throw e;
        }
        this.follower = config.controlPlane() == null ? null : new PlacementFollower(
                ControlClient.connect(config.controlPlane(), "router"), dispatcher, stats, model, address(), this::placementKnown,
                metrics.registry());
        if (follower == null) {
            placementKnown(); // a static placement, checked to cover the model above
        }
    }

    private void placementKnown() {
        synchronized (lifecycle) {
            if (!stopping) {
                server.ready(true);
            }
        }
    }

    /**
     * The public service behind its bearer token, if any. The endpoint counts calls outside it, so refusals
     * for a missing or wrong token show up as UNAUTHENTICATED in the metrics.
     */
    private static ServerServiceDefinition publicApi(RouterService service, BearerToken token) {
        return token == null ? service.bindService() : ServerInterceptors.intercept(service, token.serverInterceptor());
    }

    /** Loads the model and starts serving. */
    public static RouterServer start(RouterConfig config) throws IOException {
        requireNonNull(config, "config is null");
        if (config.backend().equals("cuda")) {
            // the device kernels exist (router/src/main/cuda, checked by bench/gpu/check.sh router); the host
            // side that keeps the dense weights and the paged KV cache on the device does not yet
            throw new IllegalStateException("the router's cuda backend is not available yet: its device kernels are"
                    + " built and checked (bench/gpu/check.sh router) but the dense model still runs on the cpu;"
                    + " use --backend cpu or auto");
        }
        ModelConfig model = ModelConfig.load(config.modelDir());
        Checkpoint checkpoint = Checkpoint.open(config.modelDir());
        Gemm.warmUp(3000);
        MetricsEndpoint metrics = null;
        try {
            metrics = MetricsEndpoint.start("router", config.host(), config.metricsPort());
            RouterServer router = new RouterServer(config, model, checkpoint, metrics);
            LOG.info(() -> "router serving " + model.name() + " (" + model.architecture().hfName() + ") on "
                    + router.address() + (config.controlPlane() == null
                            ? " with " + config.placement().workers().size() + " workers"
                            : " following the coordinators at " + config.controlPlane().coordinators())
                    + ", " + router.wireDtype + " on the wire"
                    + (config.tls() == null ? "" : config.tls().requiresClientCertificates() ? ", mutual TLS" : ", TLS")
                    + (config.authToken() == null ? "" : ", bearer token required")
                    + (router.healthPort() == GrpcEndpoint.NO_HEALTH_PORT ? "" : ", health on port " + router.healthPort())
                    + (router.metricsPort() == MetricsEndpoint.OFF ? "" : ", metrics on port " + router.metricsPort())
                    + (router.httpPort() == RouterConfig.NO_HTTP_PORT ? "" : ", OpenAI-compatible HTTP API on " + router.httpUrl()));
            return router;
        } catch (IOException | RuntimeException e) {
            if (metrics != null) {
                metrics.close();
            }
            checkpoint.close();
            throw e;
        }
    }

    public int port() {
        return server.port();
    }

    /** Port of the plaintext health-only server, or -1 when there is none. */
    public int healthPort() {
        return server.healthPort();
    }

    /** Port of the OpenAI-compatible HTTP API, or -1 when none is served. */
    public int httpPort() {
        return http == null ? RouterConfig.NO_HTTP_PORT : http.port();
    }

    /** Base URL of the OpenAI-compatible API ({@code http[s]://host:port/v1}), or null when none is served. */
    public String httpUrl() {
        return http == null ? null : (config.tls() == null ? "http" : "https") + "://" + config.host() + ":" + http.port() + "/v1";
    }

    /** Port of {@code /metrics}, or -1 when none is served. */
    public int metricsPort() {
        return metrics.port();
    }

    public String address() {
        return config.host() + ":" + port();
    }

    public ModelConfig model() {
        return model;
    }

    public DType wireDtype() {
        return wireDtype;
    }

    /** What the dispatcher has sent where. */
    public DispatchStats stats() {
        return stats;
    }

    /**
     * The decoder running the dense part of the model with this router's remote experts; for tools
     * and tests that need logits (the public API returns tokens).
     */
    public DecoderModel decoder() {
        return decoder;
    }

    /** The placement the router routes with now. */
    public dev.moecluster.core.placement.ExpertPlacement placement() {
        return dispatcher.placement();
    }

    /** The continuous-batching scheduler behind {@code Generate}. */
    public GenerationScheduler scheduler() {
        return scheduler;
    }

    /** The longest sequence the model takes: {@code max_position_embeddings}, 4096 when absent. */
    static int contextLength(ModelConfig model) {
        JsonElement e = model.raw().get("max_position_embeddings");
        return e == null || e.isJsonNull() ? 4096 : e.getAsInt();
    }

    /** End-of-sequence ids from config.json and generation_config.json ({@code eos_token_id}, an id or a list). */
    static Set<Integer> eosTokens(Path modelDir, ModelConfig model) throws IOException {
        Set<Integer> ids = new TreeSet<>();
        addIds(model.raw().get("eos_token_id"), ids);
        Path gen = modelDir.resolve("generation_config.json");
        if (Files.exists(gen)) {
            addIds(JsonParser.parseString(Files.readString(gen)).getAsJsonObject().get("eos_token_id"), ids);
        }
        return ids;
    }

    private static void addIds(JsonElement e, Set<Integer> ids) {
        if (e == null || e.isJsonNull()) {
            return;
        }
        if (e.isJsonArray()) {
            e.getAsJsonArray().forEach(x -> ids.add(x.getAsInt()));
        } else {
            ids.add(e.getAsInt());
        }
    }

    public void awaitTermination() throws InterruptedException {
        server.awaitTermination();
    }

    /**
     * The graceful stop (SIGTERM): readiness goes NOT_SERVING, new {@code MoeForward} and
     * {@code Generate} calls get UNAVAILABLE ("router is shutting down"), calls and streams already
     * taken run to completion (the scheduler keeps stepping) for up to {@code grace}; then
     * {@link #close()} fails whatever is left.
     *
     * @return true when every call taken before the stop finished within {@code grace}
     */
    public boolean shutdown(Duration grace) {
        requireNonNull(grace, "grace is null");
        synchronized (lifecycle) {
            if (stopping) {
                return false;
            }
            stopping = true;
            server.ready(false);
        }
        service.stopAccepting();
        if (http != null) {
            http.stopAccepting();
        }
        long start = System.nanoTime();
        long deadline = start + grace.toNanos();
        long nextProgress = 0;
        boolean finished;
        while (!(finished = idle())) {
            long now = System.nanoTime();
            if (now - deadline >= 0) {
                break;
            }
            if (now - start >= TimeUnit.MILLISECONDS.toNanos(nextProgress)) {
                nextProgress += SHUTDOWN_PROGRESS_MILLIS;
                LOG.info("router stopping: not ready, refusing new calls; " + inFlight() + "; waiting up to "
                        + TimeUnit.NANOSECONDS.toSeconds(deadline - now) + " s more");
            }
            try {
                Thread.sleep(SHUTDOWN_POLL_MILLIS);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                break;
            }
        }
        if (finished) {
            LOG.info("router stopping: every call in flight finished; closing");
        } else {
            LOG.warning("router stopping: " + inFlight() + " left after " + grace.toSeconds() + " s; closing fails them");
        }
        close();
        return finished;
    }

    private boolean idle() {
        return service.callsInHandler() == 0 && (http == null || http.callsInHandler() == 0)
                && scheduler.requestsInFlight() == 0;
    }

    private String inFlight() {
        return service.callsInHandler() + " MoeForward calls and " + scheduler.requestsInFlight() + " Generate streams in flight";
    }

    @Override
    public void close() {
        if (!closed.compareAndSet(false, true)) {
            return;
        }
        synchronized (lifecycle) {
            stopping = true;
        }
        scheduler.close();
        if (http != null) {
            http.close();
        }
        server.close();
        if (follower != null) {
            follower.close();
        }
        dispatcher.close();
        if (tokenizer != null) {
            tokenizer.close();
        }
        checkpoint.close();
        metrics.close();
    }
}
