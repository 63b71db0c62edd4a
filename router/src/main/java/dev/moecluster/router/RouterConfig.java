package dev.moecluster.router;

import static java.util.Objects.requireNonNull;

import dev.moecluster.control.BearerToken;
import dev.moecluster.control.ControlPlaneConfig;
import dev.moecluster.control.DataPlaneAccess;
import dev.moecluster.control.GrpcEndpoint;
import dev.moecluster.control.MetricsEndpoint;
import dev.moecluster.control.TlsConfig;
import dev.moecluster.core.placement.ExpertPlacement;
import dev.moecluster.core.tensor.DType;
import dev.moecluster.router.generate.GenerationConfig;
import java.nio.file.Path;
import java.time.Duration;

/**
 * Everything a router is started with, validated once.
 *
 * @param host address to bind, 127.0.0.1 by default
 * @param port public API port; 0 picks a free one
 * @param modelDir Hugging Face model directory (the router reads gates and shared experts only)
 * @param placement which workers hold which experts
 * @param wireDtype dtype of activations sent to workers; null means the checkpoint's dtype
 * @param expertTimeout deadline for one worker batch before its rows go to a replica
 * @param maxInboundMessageBytes largest request or worker result accepted
 * @param maxTokensPerRequest largest MoeForward batch; larger ones get RESOURCE_EXHAUSTED
 * @param generation continuous-batching limits for {@code Generate}
 * @param controlPlane coordinators to follow for placement (then {@code placement} is only the
 *     starting point, usually empty); null for a static placement
 * @param metricsPort Prometheus {@code /metrics} port: 0 picks a free one, -1 serves none; the command
 *     line defaults to {@value #DEFAULT_METRICS_PORT}, {@link #defaults} to -1 (embedded routers)
 * @param tls TLS for the public port (client certificates required when it has a CA) and, as client
 *     identity, for the channels to the workers; null for plaintext
 * @param healthPort plaintext port serving only gRPC health: 0 picks a free one, -1 serves none
 * @param authToken bearer token {@code moe.v1.Router} calls must carry; null for none
 * @param maxTokensInFlight MoeForward tokens admitted at once across calls; a call beyond it gets
 *     RESOURCE_EXHAUSTED at once; at least {@code maxTokensPerRequest}
 * @param channelsPerWorker connections to each worker (1 by default): one HTTP/2 connection is served
 *     by one event-loop thread at each end, near 1 GB/s, so a worker that one connection cannot feed gets more
 * @param dataPlane the internal token the router sends workers ({@link DataPlaneAccess#OPEN}, or null, for none)
 * @param httpPort OpenAI-compatible HTTP API port (same host, TLS and token as the gRPC port): 0 picks a
 *     free one, -1 serves none; the command line defaults to {@value #DEFAULT_HTTP_PORT}, {@link #defaults} to -1
 * @param backend where the dense model runs, {@code cpu} or {@code cuda} ({@code moe router --backend}
 *     resolves {@code auto} to one of them before the config is made); null means cpu
 */
public record RouterConfig(
        String host,
        int port,
        Path modelDir,
        ExpertPlacement placement,
        DType wireDtype,
        Duration expertTimeout,
        int maxInboundMessageBytes,
        int maxTokensPerRequest,
        GenerationConfig generation,
        ControlPlaneConfig controlPlane,
        int metricsPort,
        TlsConfig tls,
        int healthPort,
        BearerToken authToken,
        int maxTokensInFlight,
        int channelsPerWorker,
        DataPlaneAccess dataPlane,
        int httpPort,
        String backend) {

    public static final int DEFAULT_MAX_INBOUND_BYTES = 64 * 1024 * 1024;

    /**
     * The largest message a router takes by default: a MoeForward call of {@code maxTokens} rows of
     * {@code hiddenSize} f32 values (the widest dtype a caller may send; its answer is as large) with
     * 1 MiB to spare for the rest of the message, and never less than {@link #DEFAULT_MAX_INBOUND_BYTES}.
     * At Llama 4's hidden size of 5,120, the default 8,192 tokens need 161 MiB: a fixed 64 MiB refused
     * the router's own largest call.
     *
     * @throws IllegalArgumentException when that passes gRPC's 2 GiB message limit
     */
    public static int maxInboundBytesFor(int maxTokens, int hiddenSize) {
        long bytes = Math.max(DEFAULT_MAX_INBOUND_BYTES, 4L * maxTokens * hiddenSize + (1 << 20));
        if (bytes > Integer.MAX_VALUE) {
            throw new IllegalArgumentException(maxTokens + " tokens of hidden size " + hiddenSize + " in f32 take "
                    + (bytes >> 20) + " MiB, past gRPC's 2 GiB message limit: lower --max-tokens");
        }
        return (int) bytes;
    }
    /** Default MoeForward tokens in flight, in calls of the largest size. */
    public static final int IN_FLIGHT_CALLS = 4;
    /** {@code moe router --metrics-port} default. */
    public static final int DEFAULT_METRICS_PORT = 9400;
    /** {@code moe router --http-port} default (vLLM's and SGLang's OpenAI port). */
    public static final int DEFAULT_HTTP_PORT = 8000;
    /** The {@code --http-port} value that serves no HTTP API. */
    public static final int NO_HTTP_PORT = -1;
    /** Dense-model backends a config may name. */
    public static final java.util.List<String> BACKENDS = java.util.List.of("cpu", "cuda");

    public RouterConfig {
        requireNonNull(host, "host is null");
        requireNonNull(modelDir, "modelDir is null");
        requireNonNull(placement, "placement is null");
        requireNonNull(expertTimeout, "expertTimeout is null");
        requireNonNull(generation, "generation is null");
        if (port < 0 || port > 65535) {
            throw new IllegalArgumentException("port must be 0..65535, got " + port);
        }
        if (wireDtype == DType.F16) {
            throw new IllegalArgumentException("wire dtype must be f32, bf16 or fp8");
        }
        if (expertTimeout.isZero() || expertTimeout.isNegative()) {
            throw new IllegalArgumentException("expert timeout must be positive");
        }
        if (maxInboundMessageBytes < 1024) {
            throw new IllegalArgumentException("max inbound message size is too small: " + maxInboundMessageBytes);
        }
        if (maxTokensPerRequest < 1) {
            throw new IllegalArgumentException("max tokens per request must be at least 1");
        }
        if (maxTokensInFlight < maxTokensPerRequest) {
            throw new IllegalArgumentException("MoeForward tokens in flight (" + maxTokensInFlight
                    + ") must be at least the tokens of one call (" + maxTokensPerRequest + ")");
        }
        MetricsEndpoint.requirePort(metricsPort);
        GrpcEndpoint.requireHealthPort(healthPort);
        if (channelsPerWorker < 1 || channelsPerWorker > 64) {
            throw new IllegalArgumentException("channels per worker must be 1..64, got " + channelsPerWorker);
        }
        dataPlane = dataPlane == null ? DataPlaneAccess.OPEN : dataPlane;
        if (httpPort < NO_HTTP_PORT || httpPort > 65535) {
            throw new IllegalArgumentException("HTTP port must be -1 (none), 0 (free port) or 1..65535, got " + httpPort);
        }
        backend = backend == null ? "cpu" : backend;
        if (!BACKENDS.contains(backend)) {
            throw new IllegalArgumentException("router backend must be cpu or cuda, got '" + backend + "'");
        }
    }

    /** Plaintext, no health-only port, no token, 4 × {@code maxTokensPerRequest} MoeForward tokens in flight. */
    public RouterConfig(String host, int port, Path modelDir, ExpertPlacement placement, DType wireDtype,
            Duration expertTimeout, int maxInboundMessageBytes, int maxTokensPerRequest, GenerationConfig generation,
            ControlPlaneConfig controlPlane, int metricsPort) {
        this(host, port, modelDir, placement, wireDtype, expertTimeout, maxInboundMessageBytes, maxTokensPerRequest,
                generation, controlPlane, metricsPort, null, GrpcEndpoint.NO_HEALTH_PORT, null,
                Math.multiplyExact(IN_FLIGHT_CALLS, maxTokensPerRequest), 1, DataPlaneAccess.OPEN, NO_HTTP_PORT, "cpu");
    }

    /**
     * Defaults: loopback, free port, checkpoint dtype on the wire, 10 s expert deadline, 64 MiB
     * messages, 8192 tokens per MoeForward, {@link GenerationConfig#defaults()}, no metrics port.
     */
    public static RouterConfig defaults(Path modelDir, ExpertPlacement placement) {
        return new RouterConfig("127.0.0.1", 0, modelDir, placement, null, Duration.ofSeconds(10),
                DEFAULT_MAX_INBOUND_BYTES, 8192, GenerationConfig.defaults(), null, MetricsEndpoint.OFF);
    }

    public RouterConfig withPort(int newPort) {
        return new RouterConfig(host, newPort, modelDir, placement, wireDtype, expertTimeout, maxInboundMessageBytes,
                maxTokensPerRequest, generation, controlPlane, metricsPort, tls, healthPort, authToken, maxTokensInFlight, channelsPerWorker, dataPlane, httpPort, backend);
    }

    public RouterConfig withHost(String newHost) {
        return new RouterConfig(newHost, port, modelDir, placement, wireDtype, expertTimeout, maxInboundMessageBytes,
                maxTokensPerRequest, generation, controlPlane, metricsPort, tls, healthPort, authToken, maxTokensInFlight, channelsPerWorker, dataPlane, httpPort, backend);
    }

    public RouterConfig withWireDtype(DType dtype) {
        return new RouterConfig(host, port, modelDir, placement, dtype, expertTimeout, maxInboundMessageBytes,
                maxTokensPerRequest, generation, controlPlane, metricsPort, tls, healthPort, authToken, maxTokensInFlight, channelsPerWorker, dataPlane, httpPort, backend);
    }

    public RouterConfig withExpertTimeout(Duration timeout) {
        return new RouterConfig(host, port, modelDir, placement, wireDtype, timeout, maxInboundMessageBytes,
                maxTokensPerRequest, generation, controlPlane, metricsPort, tls, healthPort, authToken, maxTokensInFlight, channelsPerWorker, dataPlane, httpPort, backend);
    }

    public RouterConfig withMaxInboundMessageBytes(int bytes) {
        return new RouterConfig(host, port, modelDir, placement, wireDtype, expertTimeout, bytes, maxTokensPerRequest, generation, controlPlane, metricsPort, tls, healthPort, authToken, maxTokensInFlight, channelsPerWorker, dataPlane, httpPort, backend);
    }

    /** Follows the coordinators' placement, starting from none. */
    public RouterConfig withControlPlane(ControlPlaneConfig control) {
        return new RouterConfig(host, port, modelDir, placement, wireDtype, expertTimeout, maxInboundMessageBytes,
                maxTokensPerRequest, generation, control, metricsPort, tls, healthPort, authToken, maxTokensInFlight, channelsPerWorker, dataPlane, httpPort, backend);
    }

    public RouterConfig withGeneration(GenerationConfig g) {
        return new RouterConfig(host, port, modelDir, placement, wireDtype, expertTimeout, maxInboundMessageBytes,
                maxTokensPerRequest, g, controlPlane, metricsPort, tls, healthPort, authToken, maxTokensInFlight, channelsPerWorker, dataPlane, httpPort, backend);
    }

    /** Raises the MoeForward tokens in flight to {@code tokens} where they were fewer. */
    public RouterConfig withMaxTokensPerRequest(int tokens) {
        return new RouterConfig(host, port, modelDir, placement, wireDtype, expertTimeout, maxInboundMessageBytes, tokens, generation, controlPlane, metricsPort, tls, healthPort, authToken, Math.max(tokens, maxTokensInFlight), channelsPerWorker, dataPlane, httpPort, backend);
    }

    /** Admits at most {@code tokens} MoeForward tokens at once across calls. */
    public RouterConfig withMaxTokensInFlight(int tokens) {
        return new RouterConfig(host, port, modelDir, placement, wireDtype, expertTimeout, maxInboundMessageBytes,
                maxTokensPerRequest, generation, controlPlane, metricsPort, tls, healthPort, authToken, tokens, channelsPerWorker, dataPlane, httpPort, backend);
    }

    /** Serves {@code /metrics} on {@code port}: 0 picks a free one, -1 serves none. */
    public RouterConfig withMetricsPort(int port) {
        return new RouterConfig(host, this.port, modelDir, placement, wireDtype, expertTimeout, maxInboundMessageBytes,
                maxTokensPerRequest, generation, controlPlane, port, tls, healthPort, authToken, maxTokensInFlight, channelsPerWorker, dataPlane, httpPort, backend);
    }

    /** Serves the public port over TLS and dials workers with it; null for plaintext. */
    public RouterConfig withTls(TlsConfig newTls) {
        return new RouterConfig(host, port, modelDir, placement, wireDtype, expertTimeout, maxInboundMessageBytes,
                maxTokensPerRequest, generation, controlPlane, metricsPort, newTls, healthPort, authToken, maxTokensInFlight, channelsPerWorker, dataPlane, httpPort, backend);
    }

    /** Serves gRPC health alone on a plaintext {@code port}: 0 picks a free one, -1 serves none. */
    public RouterConfig withHealthPort(int port) {
        return new RouterConfig(host, this.port, modelDir, placement, wireDtype, expertTimeout, maxInboundMessageBytes,
                maxTokensPerRequest, generation, controlPlane, metricsPort, tls, port, authToken, maxTokensInFlight, channelsPerWorker, dataPlane, httpPort, backend);
    }

    /** Requires {@code token} on {@code moe.v1.Router} calls; null for none. */
    public RouterConfig withAuthToken(BearerToken token) {
        return new RouterConfig(host, port, modelDir, placement, wireDtype, expertTimeout, maxInboundMessageBytes,
                maxTokensPerRequest, generation, controlPlane, metricsPort, tls, healthPort, token, maxTokensInFlight, channelsPerWorker, dataPlane, httpPort, backend);
    }

    /** Opens {@code n} connections to each worker. */
    public RouterConfig withChannelsPerWorker(int n) {
        return new RouterConfig(host, port, modelDir, placement, wireDtype, expertTimeout, maxInboundMessageBytes,
                maxTokensPerRequest, generation, controlPlane, metricsPort, tls, healthPort, authToken, maxTokensInFlight, n, dataPlane, httpPort, backend);
    }

    /** Sends workers the routers' internal token ({@code --data-plane-token-file}) on every call. */
    public RouterConfig withDataPlane(DataPlaneAccess access) {
        return new RouterConfig(host, port, modelDir, placement, wireDtype, expertTimeout, maxInboundMessageBytes,
                maxTokensPerRequest, generation, controlPlane, metricsPort, tls, healthPort, authToken, maxTokensInFlight,
                channelsPerWorker, access, httpPort, backend);
    }

    /** Serves the OpenAI-compatible HTTP API on {@code port}: 0 picks a free one, -1 serves none. */
    public RouterConfig withHttpPort(int port) {
        return new RouterConfig(host, this.port, modelDir, placement, wireDtype, expertTimeout, maxInboundMessageBytes,
                maxTokensPerRequest, generation, controlPlane, metricsPort, tls, healthPort, authToken, maxTokensInFlight,
                channelsPerWorker, dataPlane, port, backend);
    }

    /** Runs the dense model on {@code name}: cpu or cuda. */
    public RouterConfig withBackend(String name) {
        return new RouterConfig(host, port, modelDir, placement, wireDtype, expertTimeout, maxInboundMessageBytes,
                maxTokensPerRequest, generation, controlPlane, metricsPort, tls, healthPort, authToken, maxTokensInFlight,
                channelsPerWorker, dataPlane, httpPort, name);
    }
}
