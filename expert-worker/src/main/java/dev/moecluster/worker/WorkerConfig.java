package dev.moecluster.worker;

import static java.util.Objects.requireNonNull;

import dev.moecluster.control.ControlPlaneConfig;
import dev.moecluster.control.DataPlaneAccess;
import dev.moecluster.control.GrpcEndpoint;
import dev.moecluster.control.MetricsEndpoint;
import dev.moecluster.control.TlsConfig;
import dev.moecluster.core.placement.ExpertAssignment;
import java.nio.file.Path;
import java.time.Duration;

/**
 * Everything an expert worker is started with, validated once.
 *
 * @param workerId name in logs and {@code Describe}
 * @param host address to bind, 127.0.0.1 by default
 * @param port port to listen on; 0 picks a free one
 * @param modelDir Hugging Face model directory the experts are read from
 * @param assignment the experts to hold
 * @param backend {@code cpu}, {@code cuda} or {@code auto} (cuda where a GPU is usable, else cpu); see
 *     {@link ExpertBackends}
 * @param coalesceWindow how long the compute thread waits after the first row for more; zero means
 *     batch whatever is queued when it is free
 * @param maxInboundMessageBytes largest ExpertBatch accepted
 * @param maxBatchesInFlightPerStream batches of one router stream being computed at once before the
 *     worker stops reading that stream (back-pressure)
 * @param controlPlane coordinators to register with and take assignments from; null for a static worker
 * @param memoryBytes memory budget for expert weights, reported to the coordinator's planner
 * @param metricsPort Prometheus {@code /metrics} port: 0 picks a free one, -1 serves none; the command
 *     line defaults to {@value #DEFAULT_METRICS_PORT}, {@link #defaults} to -1 (embedded workers)
 * @param perExpertMetrics rows computed as one series per held (layer, expert); false sums them into one
 * @param tls TLS for the worker's port (router certificates required when it has a CA); null for plaintext
 * @param healthPort plaintext port serving only gRPC health: 0 picks a free one, -1 serves none
 * @param advertiseHost the host routers and coordinators are told to reach this worker at (its key in
 *     the worker registry; in Kubernetes the pod's stable DNS name); null = {@code host}, or this
 *     machine's address when {@code host} binds every interface
 * @param dataPlane who may call the ExpertService: the routers' internal token and/or certificate names;
 *     {@link DataPlaneAccess#OPEN} (null) for anyone who reaches the port
 * @param throughputRowsPerSecond the expert rows/s reported to the planner: {@link #CALIBRATE} (-1)
 *     measures the backend at start (and reports the live rate beside it); 0 reports none (the
 *     planner assumes the slowest known speed); a positive figure is reported as given (tests,
 *     or an operator who measured it)
 */
public record WorkerConfig(
        String workerId,
        String host,
        int port,
        Path modelDir,
        ExpertAssignment assignment,
        String backend,
        Duration coalesceWindow,
        int maxInboundMessageBytes,
        int maxBatchesInFlightPerStream,
        ControlPlaneConfig controlPlane,
        long memoryBytes,
        int metricsPort,
        boolean perExpertMetrics,
        TlsConfig tls,
        int healthPort,
        String advertiseHost,
        DataPlaneAccess dataPlane,
        double throughputRowsPerSecond) {

    public static final int DEFAULT_MAX_INBOUND_BYTES = 256 * 1024 * 1024;
    public static final long DEFAULT_MEMORY_BYTES = 8L << 30;
    /** {@code moe worker --metrics-port} default. */
    public static final int DEFAULT_METRICS_PORT = 9401;
    /** {@link #throughputRowsPerSecond()}: measure at start. */
    public static final double CALIBRATE = -1;

    public WorkerConfig {
        requireNonNull(workerId, "workerId is null");
        requireNonNull(host, "host is null");
        requireNonNull(modelDir, "modelDir is null");
        requireNonNull(assignment, "assignment is null");
        requireNonNull(backend, "backend is null");
        requireNonNull(coalesceWindow, "coalesceWindow is null");
        if (port < 0 || port > 65535) {
            throw new IllegalArgumentException("port must be 0..65535, got " + port);
        }
        if (!ExpertBackends.NAMES.contains(backend)) {
            throw new IllegalArgumentException("unknown backend '" + backend + "' (available: "
                    + String.join(", ", ExpertBackends.NAMES) + ")");
        }
        if (coalesceWindow.isNegative()) {
            throw new IllegalArgumentException("coalesce window must not be negative");
        }
        if (maxInboundMessageBytes < 1024) {
            throw new IllegalArgumentException("max inbound message size is too small: " + maxInboundMessageBytes);
        }
        if (memoryBytes < 0) {
            throw new IllegalArgumentException("memory budget must not be negative");
        }
        if (maxBatchesInFlightPerStream < 1) {
            throw new IllegalArgumentException("max batches in flight per stream must be at least 1");
        }
        MetricsEndpoint.requirePort(metricsPort);
        GrpcEndpoint.requireHealthPort(healthPort);
        dataPlane = dataPlane == null ? DataPlaneAccess.OPEN : dataPlane;
        if (advertiseHost != null && (advertiseHost.isBlank() || advertiseHost.contains(":"))) {
            throw new IllegalArgumentException("advertised host must be a host name or IPv4 address without a port, got '"
                    + advertiseHost + "'");
        }
        if (!(throughputRowsPerSecond == CALIBRATE || throughputRowsPerSecond >= 0) || Double.isInfinite(throughputRowsPerSecond)) {
            throw new IllegalArgumentException("throughput must be a finite number of rows/s >= 0 (0: none), or -1 to measure it,"
                    + " got " + throughputRowsPerSecond);
        }
    }

    /** Anyone who reaches the port may call the ExpertService. */
    public WorkerConfig(String workerId, String host, int port, Path modelDir, ExpertAssignment assignment, String backend,
            Duration coalesceWindow, int maxInboundMessageBytes, int maxBatchesInFlightPerStream,
            ControlPlaneConfig controlPlane, long memoryBytes, int metricsPort, boolean perExpertMetrics, TlsConfig tls,
            int healthPort, String advertiseHost) {
        this(workerId, host, port, modelDir, assignment, backend, coalesceWindow, maxInboundMessageBytes,
                maxBatchesInFlightPerStream, controlPlane, memoryBytes, metricsPort, perExpertMetrics, tls, healthPort,
                advertiseHost, DataPlaneAccess.OPEN, CALIBRATE);
    }

    /** Plaintext, no health-only port. */
    public WorkerConfig(String workerId, String host, int port, Path modelDir, ExpertAssignment assignment, String backend,
            Duration coalesceWindow, int maxInboundMessageBytes, int maxBatchesInFlightPerStream,
            ControlPlaneConfig controlPlane, long memoryBytes, int metricsPort, boolean perExpertMetrics) {
        this(workerId, host, port, modelDir, assignment, backend, coalesceWindow, maxInboundMessageBytes,
                maxBatchesInFlightPerStream, controlPlane, memoryBytes, metricsPort, perExpertMetrics, null,
                GrpcEndpoint.NO_HEALTH_PORT, null);
    }

    /** A config with the defaults: loopback, free port, cpu, natural batching, 256 MiB messages, 64 in flight, no metrics port, per-expert series. */
    public static WorkerConfig defaults(String workerId, Path modelDir, ExpertAssignment assignment) {
        return new WorkerConfig(workerId, "127.0.0.1", 0, modelDir, assignment, "cpu", Duration.ZERO,
                DEFAULT_MAX_INBOUND_BYTES, 64, null, DEFAULT_MEMORY_BYTES, MetricsEndpoint.OFF, true);
    }

    public WorkerConfig withPort(int newPort) {
        return new WorkerConfig(workerId, host, newPort, modelDir, assignment, backend, coalesceWindow,
                maxInboundMessageBytes, maxBatchesInFlightPerStream, controlPlane, memoryBytes, metricsPort, perExpertMetrics, tls, healthPort, advertiseHost, dataPlane, throughputRowsPerSecond);
    }

    public WorkerConfig withHost(String newHost) {
        return new WorkerConfig(workerId, newHost, port, modelDir, assignment, backend, coalesceWindow,
                maxInboundMessageBytes, maxBatchesInFlightPerStream, controlPlane, memoryBytes, metricsPort, perExpertMetrics, tls, healthPort, advertiseHost, dataPlane, throughputRowsPerSecond);
    }

    /** The same worker, registering with {@code control} and holding what the coordinator assigns. */
    public WorkerConfig withControlPlane(ControlPlaneConfig control, long budgetBytes) {
        return new WorkerConfig(workerId, host, port, modelDir, assignment, backend, coalesceWindow, maxInboundMessageBytes,
                maxBatchesInFlightPerStream, control, budgetBytes, metricsPort, perExpertMetrics, tls, healthPort, advertiseHost, dataPlane, throughputRowsPerSecond);
    }

    public WorkerConfig withCoalesceWindow(Duration window) {
        return new WorkerConfig(workerId, host, port, modelDir, assignment, backend, window,
                maxInboundMessageBytes, maxBatchesInFlightPerStream, controlPlane, memoryBytes, metricsPort, perExpertMetrics, tls, healthPort, advertiseHost, dataPlane, throughputRowsPerSecond);
    }

    public WorkerConfig withMaxInboundMessageBytes(int bytes) {
        return new WorkerConfig(workerId, host, port, modelDir, assignment, backend, coalesceWindow, bytes,
                maxBatchesInFlightPerStream, controlPlane, memoryBytes, metricsPort, perExpertMetrics, tls, healthPort, advertiseHost, dataPlane, throughputRowsPerSecond);
    }

    /** Serves {@code /metrics} on {@code port} (0 picks a free one, -1 none), per expert or summed. */
    public WorkerConfig withMetrics(int port, boolean perExpert) {
        return new WorkerConfig(workerId, host, this.port, modelDir, assignment, backend, coalesceWindow,
                maxInboundMessageBytes, maxBatchesInFlightPerStream, controlPlane, memoryBytes, port, perExpert, tls, healthPort, advertiseHost, dataPlane, throughputRowsPerSecond);
    }

    /** Serves the worker's port over TLS; null for plaintext. */
    public WorkerConfig withTls(TlsConfig newTls) {
        return new WorkerConfig(workerId, host, port, modelDir, assignment, backend, coalesceWindow, maxInboundMessageBytes,
                maxBatchesInFlightPerStream, controlPlane, memoryBytes, metricsPort, perExpertMetrics, newTls, healthPort, advertiseHost, dataPlane, throughputRowsPerSecond);
    }

    /** Serves gRPC health alone on a plaintext {@code port}: 0 picks a free one, -1 serves none. */
    public WorkerConfig withHealthPort(int port) {
        return new WorkerConfig(workerId, host, this.port, modelDir, assignment, backend, coalesceWindow,
                maxInboundMessageBytes, maxBatchesInFlightPerStream, controlPlane, memoryBytes, metricsPort, perExpertMetrics,
                tls, port, advertiseHost, dataPlane, throughputRowsPerSecond);
    }

    /** Registers as {@code host:port} for routers to dial; null = the bound host (see the record's docs). */
    public WorkerConfig withAdvertiseHost(String host) {
        return new WorkerConfig(workerId, this.host, port, modelDir, assignment, backend, coalesceWindow,
                maxInboundMessageBytes, maxBatchesInFlightPerStream, controlPlane, memoryBytes, metricsPort, perExpertMetrics,
                tls, healthPort, host, dataPlane, throughputRowsPerSecond);
    }

    /** Only callers with the routers' internal token and/or an allowed certificate may call the ExpertService. */
    public WorkerConfig withDataPlane(DataPlaneAccess access) {
        return new WorkerConfig(workerId, host, port, modelDir, assignment, backend, coalesceWindow, maxInboundMessageBytes,
                maxBatchesInFlightPerStream, controlPlane, memoryBytes, metricsPort, perExpertMetrics, tls, healthPort,
                advertiseHost, access, throughputRowsPerSecond);
    }

    /** Reports {@code rowsPerSecond} to the planner: {@link #CALIBRATE} measures it at start, 0 reports none. */
    public WorkerConfig withThroughput(double rowsPerSecond) {
        return new WorkerConfig(workerId, host, port, modelDir, assignment, backend, coalesceWindow,
                maxInboundMessageBytes, maxBatchesInFlightPerStream, controlPlane, memoryBytes, metricsPort, perExpertMetrics,
                tls, healthPort, advertiseHost, dataPlane, rowsPerSecond);
    }
}
