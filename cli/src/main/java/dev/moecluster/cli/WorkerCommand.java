package dev.moecluster.cli;

import dev.moecluster.control.BearerToken;
import dev.moecluster.control.ControlPlaneConfig;
import dev.moecluster.control.DataPlaneAccess;
import dev.moecluster.control.RecordSigning;
import dev.moecluster.coordinator.MemorySize;
import dev.moecluster.core.model.ModelConfig;
import dev.moecluster.core.placement.ExpertAssignment;
import dev.moecluster.core.placement.ExpertPlacement;
import dev.moecluster.worker.ExpertBackend;
import dev.moecluster.worker.ExpertBackends;
import dev.moecluster.worker.ExpertWorker;
import dev.moecluster.worker.WorkerConfig;
import java.io.IOException;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.concurrent.Callable;
import picocli.CommandLine.ArgGroup;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

/** {@code moe worker}: one expert worker process. */
@Command(name = "worker", mixinStandardHelpOptions = true,
        description = "Run one expert worker: hold a set of experts and serve moe.v1.ExpertService.")
final class WorkerCommand implements Callable<Integer> {
    @Mixin
    ModelOptions model;

    @Option(names = "--host", defaultValue = "127.0.0.1", description = "Address to bind (default: ${DEFAULT-VALUE}; 0.0.0.0 for all).")
    String host;

    @Option(names = "--advertise", paramLabel = "HOST",
            description = "Host name routers dial and the worker registers under (with the port), e.g. the pod's DNS name in a "
                    + "StatefulSet; it must match the TLS certificate. Default: --host, or this machine's address when --host is 0.0.0.0.")
    String advertise;

    @Option(names = "--metrics-port", defaultValue = "9401",
            description = "Prometheus /metrics port; 0 picks a free one, -1 serves none (default: ${DEFAULT-VALUE}).")
    int metricsPort;

    @Option(names = "--per-expert-metrics", arity = "0..1", defaultValue = "true", fallbackValue = "true",
            description = "Rows computed as one series per held (layer, expert); =false sums them into one (default: ${DEFAULT-VALUE}).")
    boolean perExpertMetrics;

    @Option(names = "--port", defaultValue = "50061", description = "Port to listen on; 0 picks a free one (default: ${DEFAULT-VALUE}).")
    int port;

    @Option(names = "--health-port", defaultValue = "-1",
            description = "Extra plaintext port serving only gRPC health, for probes when the gRPC port requires mutual TLS; 0 picks a free one, -1 serves none (default: ${DEFAULT-VALUE}).")
    int healthPort;

    @Mixin
    ServerTlsOptions tls;

    @Option(names = "--id", description = "Worker name in logs and Describe. Default: worker-PORT.")
    String id;

    @ArgGroup(exclusive = true, multiplicity = "1")
    Assignment assignment;

    static final class Assignment {
        @Option(names = "--coordinators", paramLabel = "HOST:PORT,...", split = ",",
                description = "Coordinators' control API addresses (their --control-port, default 50070; several for failover): register there and hold the experts they assign.")
        String[] coordinators;

        @Option(names = "--experts", paramLabel = "SPEC",
                description = "Experts to hold: all; a list for every MoE layer (0-3,6); or per layer (1:0-3;3:4-7).")
        String experts;

        @Option(names = "--shard", paramLabel = "I/N",
                description = "Hold the round-robin share of worker I of N (the placement `moe router --workers` computes).")
        String shard;

        @Option(names = "--placement", paramLabel = "FILE",
                description = "Placement JSON; this worker holds the experts placed on --id (its host:port there).")
        Path placement;
    }

    @Option(names = "--control-token-file", paramLabel = "FILE",
            description = "With --coordinators: send the token in FILE (its first line) on every control call, for coordinators started with --worker-token-file (the same token).")
    Path controlTokenFile;

    @Option(names = "--placement-public-key", paramLabel = "FILE",
            description = "With --coordinators: the leader's Ed25519 public key (PEM, openssl pkey -pubout of the coordinators' --signing-key); assignment records without its valid signature for this worker are ignored, with a warning.")
    Path placementPublicKey;

    @Option(names = "--data-plane-token-file", paramLabel = "FILE",
            description = "Require the routers' internal token (same file on routers, one per line, read again within 10 s of a change) on ExpertService calls; missing or wrong gets UNAUTHENTICATED. For clusters without mutual TLS.")
    Path dataPlaneTokenFile;

    @Option(names = "--allowed-clients", split = ",", paramLabel = "NAME,...",
            description = "Under mutual TLS: accept ExpertService calls only from client certificates with one of these names (subject DN as RFC 2253 prints it, its CN, or a subject alternative name), e.g. the routers' certificate; others get PERMISSION_DENIED.")
    List<String> allowedClients;

    @Option(names = "--memory-budget", defaultValue = "8GiB", paramLabel = "SIZE",
            description = "Memory for expert weights the coordinator may fill, e.g. 80GiB (default: ${DEFAULT-VALUE}).")
    String memoryBudget;

    @Option(names = "--replicas", defaultValue = "1", description = "With --shard: replicas per expert, as given to the router (default: ${DEFAULT-VALUE}).")
    int replicas;

    @Option(names = "--backend", defaultValue = "cpu",
            description = "Compute backend: cpu; cuda (NVIDIA GPU through JCuda; fails at start if none is usable); or auto (cuda when a usable GPU is found, else cpu, saying which) (default: ${DEFAULT-VALUE}).")
    String backend;

    @Option(names = "--cpu-kernel", defaultValue = "auto",
            description = "GEMM of the cpu backend: native (AVX2+FMA library from the jar; fails at start where it cannot load or the CPU lacks"
                    + " AVX2/FMA); vector (the portable Vector API kernel, forced); or auto (native where it runs, else vector, saying which)"
                    + " (default: ${DEFAULT-VALUE}).")
    String cpuKernel;

    @Option(names = "--throughput-rows-per-s", defaultValue = "-1", paramLabel = "ROWS",
            description = "Expert rows/s reported to the coordinators' planner, which balances time on workers of unequal speed:"
                    + " -1 measures the backend at start on one of the model's experts (the live rate is reported beside it)"
                    + " (default); 0 reports none; a positive figure is reported as given.")
    double throughput;

    @Option(names = "--coalesce-window-us", defaultValue = "0",
            description = "Wait this long after the first row for more rows of the same expert; 0 batches whatever is queued (default: ${DEFAULT-VALUE}).")
    long coalesceMicros;

    @Option(names = "--max-message-mb", defaultValue = "256", description = "Largest batch accepted, MiB (default: ${DEFAULT-VALUE}).")
    int maxMessageMb;

    @Option(names = "--drain-timeout-s", defaultValue = "120",
            description = "On SIGTERM with --coordinators: keep serving while the coordinators move this worker's experts elsewhere, "
                    + "until they report it DRAINED or this many seconds pass; then stop and exit 0 (default: ${DEFAULT-VALUE}).")
    long drainTimeoutSeconds;

    @Override
    public Integer call() throws Exception {
        Path dir = model.resolve();
        ModelConfig config = ModelConfig.load(dir);
        String workerId = id != null ? id : "worker-" + port;
        ExpertAssignment held;
        ControlPlaneConfig control = null;
        if (assignment.coordinators != null) {
            control = ControlPlaneConfig.of(List.of(assignment.coordinators)).withTls(tls.resolve())
                    .withToken(controlTokenFile == null ? null : BearerToken.readFrom(controlTokenFile))
                    .withPlacementKey(placementPublicKey == null ? null : RecordSigning.publicKey(placementPublicKey));
            held = new ExpertAssignment(java.util.Map.of());
        } else if (assignment.experts != null) {
            held = ExpertAssignment.parse(assignment.experts, config);
        } else if (assignment.shard != null) {
            held = shard(assignment.shard, config);
        } else {
            ExpertPlacement p = ExpertPlacement.read(assignment.placement);
            String self = id != null ? id : (advertise != null ? advertise : host) + ":" + port;
            held = new ExpertAssignment(p.heldBy(p.indexOf(self)));
        }
        var wc = new WorkerConfig(workerId, host, port, dir, held, backend, Duration.ofNanos(coalesceMicros * 1000),
                Math.multiplyExact(maxMessageMb, 1024 * 1024), 64, control, MemorySize.parse(memoryBudget).bytes(), metricsPort,
                perExpertMetrics).withTls(tls.resolve()).withHealthPort(healthPort).withAdvertiseHost(advertise)
                .withDataPlane(new DataPlaneAccess(dataPlaneTokenFile == null ? null : BearerToken.readFrom(dataPlaneTokenFile),
                        allowedClients == null ? Set.of() : Set.copyOf(allowedClients)))
                .withThroughput(throughput);
        if (drainTimeoutSeconds < 0) {
            throw new IllegalArgumentException("--drain-timeout-s must be >= 0, got " + drainTimeoutSeconds);
        }
        ExpertBackend compute = ExpertBackends.create(backend, cpuKernel);
        ExpertWorker worker;
        try {
            worker = ExpertWorker.start(wc, compute);
        } catch (IOException | RuntimeException e) {
            compute.close();
            throw e;
        }
        Sigterm sigterm = Sigterm.handle("worker " + workerId,
                () -> worker.drainAndClose(Duration.ofSeconds(drainTimeoutSeconds)), worker::close);
        System.out.printf("worker %s holding %d experts of %s, listening on %s%s%n", workerId, held.expertCount(),
                config.name(), worker.address(), control == null ? "" : ", taking assignments from " + control.coordinators());
        worker.awaitTermination();
        sigterm.awaitGracefulStop();
        return 0;
    }

    private ExpertAssignment shard(String spec, ModelConfig config) {
        String[] parts = spec.split("/");
        int index;
        int count;
        try {
            index = Integer.parseInt(parts[0].trim());
            count = Integer.parseInt(parts[1].trim());
        } catch (RuntimeException e) {
            throw new IllegalArgumentException("--shard must look like I/N, e.g. 0/3");
        }
        if (count < 1 || index < 0 || index >= count) {
            throw new IllegalArgumentException("--shard " + spec + ": need 0 <= I < N");
        }
        List<String> names = new ArrayList<>();
        for (int i = 0; i < count; i++) {
            names.add("w" + i);
        }
        return new ExpertAssignment(ExpertPlacement.roundRobin(names, config, replicas).heldBy(index));
    }
}
