package dev.moecluster.cli;

import dev.moecluster.control.BearerToken;
import dev.moecluster.control.ControlPlaneConfig;
import dev.moecluster.control.DataPlaneAccess;
import dev.moecluster.control.RecordSigning;
import dev.moecluster.core.model.ModelConfig;
import dev.moecluster.core.placement.ExpertPlacement;
import dev.moecluster.core.tensor.DType;
import dev.moecluster.router.RouterConfig;
import dev.moecluster.router.RouterServer;
import dev.moecluster.router.generate.GenerationConfig;
import dev.moecluster.worker.cuda.CudaAvailability;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Arrays;
import java.util.List;
import java.util.Set;
import java.util.concurrent.Callable;
import picocli.CommandLine.ArgGroup;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

/** {@code moe router}: the router process, serving the public API. */
@Command(name = "router", mixinStandardHelpOptions = true,
        description = "Run the router: gate and shared experts here, routed experts on the workers; serves moe.v1.Router.")
final class RouterCommand implements Callable<Integer> {
    @Mixin
    ModelOptions model;

    @Option(names = "--host", defaultValue = "127.0.0.1", description = "Address to bind (default: ${DEFAULT-VALUE}; 0.0.0.0 for all).")
    String host;

    @Option(names = "--metrics-port", defaultValue = "9400",
            description = "Prometheus /metrics port; 0 picks a free one, -1 serves none (default: ${DEFAULT-VALUE}).")
    int metricsPort;

    @Option(names = "--port", defaultValue = "50051", description = "Public API port (default: ${DEFAULT-VALUE}).")
    int port;

    @Option(names = "--http-port", defaultValue = "8000",
            description = "OpenAI-compatible HTTP API port (/v1/models, /v1/completions, /v1/chat/completions) on the same --host, with the same TLS files and --auth-token-file as the gRPC port; 0 picks a free one, -1 serves none (default: ${DEFAULT-VALUE}).")
    int httpPort;

    @Option(names = "--health-port", defaultValue = "-1",
            description = "Extra plaintext port serving only gRPC health, for probes when the gRPC port requires mutual TLS; 0 picks a free one, -1 serves none (default: ${DEFAULT-VALUE}).")
    int healthPort;

    @Mixin
    ServerTlsOptions tls;

    @Option(names = "--auth-token-file", paramLabel = "FILE",
            description = "Require a bearer token from this file on moe.v1.Router calls (header 'authorization: Bearer TOKEN'): one token per line, any of them accepted, the file read again within 10 s of a change (rotate by adding the new token, moving clients, removing the old); health and reflection stay open.")
    Path authTokenFile;

    @ArgGroup(exclusive = true, multiplicity = "1")
    Placement placement;

    static final class Placement {
        @Option(names = "--coordinators", paramLabel = "HOST:PORT,...", split = ",",
                description = "Coordinators' control API addresses (their --control-port, default 50070; several for failover): follow the placement they publish.")
        String[] coordinators;

        @Option(names = "--workers", paramLabel = "HOST:PORT,...", split = ",",
                description = "Worker addresses, in order; experts are placed round-robin (worker I runs with --shard I/N).")
        String[] workers;

        @Option(names = "--placement", paramLabel = "FILE", description = "Placement JSON naming workers and their experts.")
        Path file;
    }

    @Option(names = "--control-token-file", paramLabel = "FILE",
            description = "With --coordinators: send the token in FILE (its first line) on every control call, for coordinators started with --router-token-file (the same token).")
    Path controlTokenFile;

    @Option(names = "--placement-public-key", paramLabel = "FILE",
            description = "With --coordinators: the leader's Ed25519 public key (PEM, openssl pkey -pubout of the coordinators' --signing-key); placement records without its valid signature are ignored, with a warning and moe_router_placements_rejected_total.")
    Path placementPublicKey;

    @Option(names = "--data-plane-token-file", paramLabel = "FILE",
            description = "Send workers the internal token in FILE (its first line) on every ExpertService call, for workers started with the same --data-plane-token-file.")
    Path dataPlaneTokenFile;

    @Option(names = "--replicas", defaultValue = "1", description = "With --workers: workers per expert (default: ${DEFAULT-VALUE}).")
    int replicas;

    @Option(names = "--wire-dtype", paramLabel = "DTYPE", description = "Activations on the wire: f32, bf16 or fp8. Default: the checkpoint's dtype.")
    String wireDtype;

    @Option(names = "--channels-per-worker", defaultValue = "1",
            description = "Connections to each worker, used in turn; one HTTP/2 connection is served by one event-loop thread"
                    + " at each end (near 1 GB/s), so raise it when one connection cannot feed a hot worker (default: ${DEFAULT-VALUE}).")
    int channelsPerWorker;

    @Option(names = "--expert-timeout-ms", defaultValue = "10000",
            description = "Deadline for a worker's batch before it is resent to a replica (default: ${DEFAULT-VALUE}).")
    long expertTimeoutMs;

    @Option(names = "--max-tokens", defaultValue = "8192", description = "Most tokens in one MoeForward call (default: ${DEFAULT-VALUE}).")
    int maxTokens;

    @Option(names = "--max-inflight-tokens", paramLabel = "N",
            description = "Most MoeForward tokens computed at once across calls; a call beyond it gets RESOURCE_EXHAUSTED at once instead of queueing (default: 4 x --max-tokens).")
    Integer maxInflightTokens;

    @Option(names = "--max-message-mb", paramLabel = "MIB",
            description = "Largest request or worker result, MiB (default: what a MoeForward call of --max-tokens rows of the model's"
                    + " hidden size takes in f32, plus 1 MiB, and at least 64: 161 for Llama 4 at 8192 tokens).")
    Integer maxMessageMb;

    @Option(names = "--max-sequences", defaultValue = "64", description = "Sequences decoded together (default: ${DEFAULT-VALUE}).")
    int maxSequences;

    @Option(names = "--max-queued", defaultValue = "256", description = "Generate requests waiting before RESOURCE_EXHAUSTED (default: ${DEFAULT-VALUE}).")
    int maxQueued;

    @Option(names = "--kv-cache-mb", defaultValue = "2048", description = "KV-cache memory for all sequences, MiB: a pool of bf16 blocks of 16 tokens that requests are admitted against (default: ${DEFAULT-VALUE}).")
    int kvCacheMb;

    @Option(names = "--prefill-chunk", defaultValue = "256", description = "Prompt tokens prefilled per step, so decodes are not starved (default: ${DEFAULT-VALUE}).")
    int prefillChunk;

    @Option(names = "--shutdown-grace-s", defaultValue = "30",
            description = "On SIGTERM: stop taking calls (UNAVAILABLE) and let calls and Generate streams in flight finish "
                    + "for up to this many seconds; then stop and exit 0 (default: ${DEFAULT-VALUE}).")
    long shutdownGraceSeconds;

    @Option(names = "--backend", defaultValue = "cpu",
            description = "Where the dense model (attention, KV cache, norms, LM head, sampling) runs: cpu; cuda (fails at start"
                    + " with 'no CUDA device: ...' where no usable GPU is found; where one is, it fails too, saying the device"
                    + " path is not available yet); or auto (cuda where usable, else cpu, saying which) (default: ${DEFAULT-VALUE}).")
    String backend;

    @Option(names = "--overlap", defaultValue = "true", negatable = true, fallbackValue = "true",
            description = "Run each decode step as two concurrent micro-batches (ping-pong); --no-overlap turns it off (default: ${DEFAULT-VALUE}).")
    boolean overlap;

    @Override
    public Integer call() throws Exception {
        String resolvedBackend = RouterBackends.resolve(backend,
                backend.equals("cpu") ? new CudaAvailability(false, "not probed") : CudaAvailability.probe());
        Path dir = model.resolve();
        ModelConfig config = ModelConfig.load(dir);
        ControlPlaneConfig control = placement.coordinators == null ? null
                : ControlPlaneConfig.of(List.of(placement.coordinators)).withTls(tls.resolve())
                    .withToken(controlTokenFile == null ? null : BearerToken.readFrom(controlTokenFile))
                        .withPlacementKey(placementPublicKey == null ? null : RecordSigning.publicKey(placementPublicKey));
        ExpertPlacement p = placement.file != null ? ExpertPlacement.read(placement.file)
                : placement.workers != null ? ExpertPlacement.roundRobin(List.copyOf(Arrays.asList(placement.workers)), config, replicas)
                : ExpertPlacement.none();
        var rc = new RouterConfig(host, port, dir, p, wireDtype == null ? null : DType.parse(wireDtype),
                Duration.ofMillis(expertTimeoutMs), maxMessageMb == null ? RouterConfig.maxInboundBytesFor(maxTokens, config.hiddenSize())
                        : Math.multiplyExact(maxMessageMb, 1024 * 1024), maxTokens,
                new GenerationConfig(maxSequences, maxQueued, (long) kvCacheMb * 1024 * 1024, prefillChunk, overlap), control,
                metricsPort).withTls(tls.resolve()).withHealthPort(healthPort).withHttpPort(httpPort)
                .withAuthToken(authTokenFile == null ? null : BearerToken.readFrom(authTokenFile))
                .withChannelsPerWorker(channelsPerWorker)
                .withBackend(resolvedBackend)
                .withDataPlane(new DataPlaneAccess(dataPlaneTokenFile == null ? null : BearerToken.readFrom(dataPlaneTokenFile), Set.of()));
        if (maxInflightTokens != null) {
            rc = rc.withMaxTokensInFlight(maxInflightTokens);
        }
        if (shutdownGraceSeconds < 0) {
            throw new IllegalArgumentException("--shutdown-grace-s must be >= 0, got " + shutdownGraceSeconds);
        }
        RouterServer router = RouterServer.start(rc);
        Sigterm sigterm = Sigterm.handle("router", () -> router.shutdown(Duration.ofSeconds(shutdownGraceSeconds)), router::close);
        System.out.printf("router serving %s (%s) on %s, %s%n", config.name(), config.architecture().hfName(),
                router.address(), control == null ? p.workers().size() + " workers" : "placement from " + control.coordinators());
        if (router.httpUrl() != null) {
            System.out.printf("OpenAI-compatible API on %s%n", router.httpUrl());
        }
        router.awaitTermination();
        sigterm.awaitGracefulStop();
        return 0;
    }
}
