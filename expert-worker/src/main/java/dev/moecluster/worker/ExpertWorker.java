package dev.moecluster.worker;

import static java.util.Objects.requireNonNull;

import dev.moecluster.control.ControlClient;
import dev.moecluster.control.DataPlaneAccess;
import dev.moecluster.control.GrpcEndpoint;
import dev.moecluster.control.MetricsEndpoint;
import dev.moecluster.control.WorkerThroughput;
import dev.moecluster.core.kernel.Gemm;
import dev.moecluster.core.model.ModelConfig;
import dev.moecluster.core.tensor.DType;
import io.grpc.ServerInterceptors;
import io.grpc.ServerServiceDefinition;
import io.prometheus.metrics.core.metrics.CounterWithCallback;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.lang.foreign.Arena;
import java.net.InetAddress;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.logging.Logger;

/**
 * A running expert worker: loads its experts and warms up the kernels, then serves
 * {@code ExpertService}, gRPC health and server reflection on one port. Readiness is SERVING once it
 * holds its experts (static: once loaded; with coordinators: once it acknowledged its first non-empty
 * assignment) and NOT_SERVING while it drains or stops; {@link #drainAndClose} is its graceful stop.
 */
public final class ExpertWorker implements AutoCloseable {
    private static final Logger LOG = Logger.getLogger(ExpertWorker.class.getName());
    /** Time allowed for compiling the kernels before the worker reports ready. */
    private static final long WARM_UP_MILLIS = 3000;
    /** Time for measuring the backend at start (both batch sizes); one call each at least. */
    private static final Duration CALIBRATION_BUDGET = Duration.ofMillis(400);

    private final WorkerConfig config;
    private final ExpertStore store;
    private final ExpertBackend backend;
    private final BatchCoalescer coalescer;
    private final ExpertComputeService service;
    private final GrpcEndpoint server;
    private final WorkerAgent agent;
    private final MetricsEndpoint metrics;
    private final ThroughputMeter throughput;
    private final AtomicBoolean stopped = new AtomicBoolean();
    private final AtomicBoolean released = new AtomicBoolean();
    private volatile boolean killed;

    private ExpertWorker(WorkerConfig config, ExpertStore store, ExpertBackend backend, MetricsEndpoint metrics,
            WorkerThroughput calibrated) throws IOException {
        this.config = config;
        this.metrics = metrics;
        this.store = store;
        this.backend = backend;
        ModelConfig model = store.config();
        this.coalescer = new BatchCoalescer(backend, config.coalesceWindow());
        this.service = new ExpertComputeService(config.workerId(), backend, store, coalescer,
                config.maxBatchesInFlightPerStream());
        GrpcEndpoint.CallCounter calls = WorkerMetrics.register(metrics.registry(), coalescer, store, service.buffers(), backend.name(),
                config.perExpertMetrics());
        this.throughput = new ThroughputMeter(calibrated, coalescer::rowsComputed, coalescer::busyNanos);
        this.server = GrpcEndpoint.start(config.host(), config.port(), config.maxInboundMessageBytes(),
                List.of(dataPlane(service.definition(), config.dataPlane())), config.tls(), config.healthPort(),
                calls);
        this.agent = config.controlPlane() == null ? null : new WorkerAgent(
                ControlClient.connect(config.controlPlane(), "worker-" + config.workerId()), store, config.workerId(),
                address(), backend.name(), backend.memory().budget(config.memoryBytes()), throughput::current,
                server::ready);
        if (agent == null) {
            server.ready(true); // a static worker holds its experts from the start
        } else {
            CounterWithCallback.builder().name("moe_worker_assignments_rejected_total")
                    .help("Assignment records ignored as malformed, with an absurd epoch, or without the leader's signature")
                    .callback(cb -> cb.call(agent.rejectedAssignments())).register(metrics.registry());
        }
    }

    /** Loads the assigned experts and starts serving with the given backend. */
    public static ExpertWorker start(WorkerConfig config, ExpertBackend backend) throws IOException {
        requireNonNull(config, "config is null");
        requireNonNull(backend, "backend is null");
        ModelConfig model = ModelConfig.load(config.modelDir());
        ExpertStore store = ExpertStore.load(config.modelDir(), model, config.assignment(), backend);
        Gemm.warmUp(WARM_UP_MILLIS);
        MetricsEndpoint metrics = null;
        try {
            WorkerThroughput calibrated = calibrate(config, store, backend);
            metrics = MetricsEndpoint.start("worker", config.host(), config.metricsPort());
            ExpertWorker worker = new ExpertWorker(config, store, backend, metrics, calibrated);
            LOG.info(() -> "worker " + config.workerId() + " serving " + config.assignment().expertCount()
                    + " experts on " + worker.address() + " (backend " + backend.name() + ")"
                    + (config.tls() == null ? "" : config.tls().requiresClientCertificates() ? ", mutual TLS" : ", TLS")
                    + (worker.healthPort() == GrpcEndpoint.NO_HEALTH_PORT ? "" : ", health on port " + worker.healthPort()));
            return worker;
        } catch (IOException | RuntimeException e) {
            if (metrics != null) {
                metrics.close();
            }
            store.close();
            throw e;
        }
    }

    /** The throughput to report: as configured, or measured on one of the model's experts. */
    private static WorkerThroughput calibrate(WorkerConfig config, ExpertStore store, ExpertBackend backend) {
        double configured = config.throughputRowsPerSecond();
        if (configured > 0) {
            return WorkerThroughput.fixed(configured);
        }
        if (configured == 0) {
            return WorkerThroughput.unknown();
        }
        try (Arena arena = Arena.ofConfined()) {
            return ThroughputMeter.calibrate(backend, store.sample(arena), DType.BF16, CALIBRATION_BUDGET);
        } catch (RuntimeException e) {
            // A worker that cannot time itself still serves; the planner takes it as the slowest.
            LOG.log(java.util.logging.Level.WARNING, "worker " + config.workerId() + " could not measure its backend ("
                    + e.getMessage() + "); reporting no throughput", e);
            return WorkerThroughput.unknown();
        }
    }

    /** Starts with the backend named in the config ({@link ExpertBackends#create}); the worker owns it. */
    public static ExpertWorker start(WorkerConfig config) throws IOException {
        requireNonNull(config, "config is null");
        ExpertBackend backend = ExpertBackends.create(config.backend());
        try {
            return start(config, backend);
        } catch (IOException | RuntimeException e) {
            backend.close();
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

    /** Port of {@code /metrics}, or -1 when none is served. */
    public int metricsPort() {
        return metrics.port();
    }

    /** The ExpertService behind the routers-only check when one is configured; health and reflection stay open. */
    private static ServerServiceDefinition dataPlane(ServerServiceDefinition service, DataPlaneAccess access) {
        return access.open() ? service : ServerInterceptors.intercept(service, access.serverInterceptor());
    }

    /** {@code host:port} routers connect to: the advertised host, else the bound one, else (bound to every interface) this machine's address. */
    public String address() {
        return advertisedHost(config) + ":" + port();
    }

    static String advertisedHost(WorkerConfig config) {
        if (config.advertiseHost() != null) {
            return config.advertiseHost();
        }
        String host = config.host();
        if (!host.equals("0.0.0.0") && !host.equals("::") && !host.equals("[::]")) {
            return host;
        }
        try {
            return InetAddress.getLocalHost().getHostAddress();
        } catch (IOException e) {
            throw new UncheckedIOException("bound to every interface and this machine's address is unknown: pass --advertise", e);
        }
    }

    public String workerId() {
        return config.workerId();
    }

    /** Batches answered with outputs so far. */
    /** The buffers batches and results are read and built in (for tests of their reuse). */
    dev.moecluster.control.wire.BufferPool buffers() {
        return service.buffers();
    }

    public long batchesServed() {
        return service.batchesServed();
    }

    /** Batches the router withdrew before this worker computed them (a hedge of them answered first). */
    public long batchesWithdrawn() {
        return service.batchesWithdrawn();
    }

    /** Expert computations (one per expert per round) and rows computed; rows per computation shows how much coalescing pooled. */
    public long backendCalls() {
        return coalescer.backendCalls();
    }

    /** What this worker reports about its speed now: the calibration and the live rate. */
    public WorkerThroughput throughput() {
        return throughput.current();
    }

    public long rowsComputed() {
        return coalescer.rowsComputed();
    }

    /** Rounds the backend computed: each is one call computing every expert it pooled. */
    /** Backend time so far: rounds from submit to results, overlapping rounds counted once. */
    public long busyNanos() {
        return coalescer.busyNanos();
    }

    /** The device's kernel time so far ({@link ExpertBackend#deviceNanos}), -1 without a device. */
    public long deviceNanos() {
        return backend.deviceNanos();
    }

    public long backendRounds() {
        return coalescer.rounds();
    }

    /** Experts held now (they change when a coordinator moves them). */
    public int expertCount() {
        return store.assignment().expertCount();
    }

    /**
     * The graceful stop (SIGTERM): with coordinators, reports not ready, asks them to drain this
     * worker and keeps serving until they report it DRAINED (its experts placed elsewhere and routers
     * switched epochs) or {@code timeout} passes; then {@link #close()}s. A static worker just closes.
     *
     * @return true when the worker was drained (always true for a static worker)
     */
    public boolean drainAndClose(Duration timeout) {
        requireNonNull(timeout, "timeout is null");
        if (stopped.get()) {
            return false;
        }
        boolean drained = true;
        if (agent != null) {
            LOG.info(() -> "worker " + config.workerId() + " stopping: draining " + expertCount() + " experts (up to "
                    + timeout.toSeconds() + " s)");
            drained = agent.drain(timeout);
        } else {
            server.ready(false);
        }
        LOG.info(() -> "worker " + config.workerId() + " closing (" + batchesServed() + " batches served)");
        close();
        return drained;
    }

    /** Stops at once, failing in-flight streams, as a crashed process would look to routers. */
    public void kill() {
        if (!stopped.compareAndSet(false, true)) {
            return;
        }
        killed = true;
        service.stop();
        if (agent != null) {
            agent.close();
        }
        server.kill();
        coalescer.close();
        metrics.close();
    }

    public void awaitTermination() throws InterruptedException {
        server.awaitTermination();
    }

    /** After {@link #kill()}: frees what a crashed process would have given back to the OS. */
    private void releaseAfterKill() {
        if (killed && released.compareAndSet(false, true)) {
            server.close(); // waits for the handlers the kill cut short, before their buffers are freed
            store.close();
            service.close();
            backend.close();
        }
    }

    @Override
    public void close() {
        if (!stopped.compareAndSet(false, true)) {
            releaseAfterKill();
            return;
        }
        server.ready(false);
        if (agent != null) {
            agent.close();
        }
        server.close();
        coalescer.close();
        released.set(true);
        store.close();
        service.close();
        backend.close();
        metrics.close();
    }
}
