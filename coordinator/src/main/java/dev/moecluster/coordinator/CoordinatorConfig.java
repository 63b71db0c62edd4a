package dev.moecluster.coordinator;

import static java.util.Objects.requireNonNull;

import dev.moecluster.control.ControlAccess;
import dev.moecluster.control.GrpcEndpoint;
import dev.moecluster.control.MetricsEndpoint;
import dev.moecluster.control.RecordSigning;
import dev.moecluster.control.ScopedTokens;
import dev.moecluster.control.TlsConfig;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;

/**
 * Everything a coordinator is started with.
 *
 * @param host address Hazelcast and the admin API bind to
 * @param hazelcastPort this member's Hazelcast port
 * @param adminPort gRPC Admin port; 0 picks a free one
 * @param members all coordinator members ({@code host:port}), this one included
 * @param kubernetesServiceDns a headless Service whose DNS records are the members (Hazelcast's Kubernetes
 *     discovery in DNS lookup mode), or null to join {@code members} over TCP-IP
 * @param modelDir the served model (only config.json is read: shape and bytes per expert)
 * @param expectedWorkers the first placement waits for this many workers, or {@code initialWait}
 * @param drainGrace after every router switched epochs, how long old copies stay for in-flight batches
 * @param rebalanceInterval how often the leader checks balancedness on its own
 * @param rebalanceBelow automatic rebalancing starts when balancedness (mean/max load) falls below this
 * @param metricsPort Prometheus {@code /metrics} port: 0 picks a free one, -1 serves none; the command
 *     line defaults to {@value #DEFAULT_METRICS_PORT}, {@link #local} to -1
 * @param tls TLS for the Admin API port (client certificates required when it has a CA); null for
 *     plaintext. Hazelcast's port has no TLS in the open-source edition
 * @param healthPort plaintext port serving only gRPC health: 0 picks a free one, -1 serves none
 * @param adminTokens bearer tokens the Admin API requires (write: everything; read: the views); null
 *     leaves it open (only TLS, if any, protects it)
 * @param signingKey the leader's Ed25519 key: it signs the placement, rollout and assignment records it
 *     writes and ignores (and repairs) ones it did not sign; null writes unsigned records
 * @param controlPort gRPC Control API port, where workers and routers reach the coordinators; 0 picks a
 *     free one
 * @param controlAccess the role tokens the Control API requires of workers and routers
 * @param expectedCoordinators coordinators in the whole cluster: a side of a split with fewer than a
 *     majority of them stops leading and writing (Hazelcast split-brain protection); 0 takes the size of
 *     {@code members}
 */
public record CoordinatorConfig(
        String clusterName,
        String host,
        int hazelcastPort,
        int adminPort,
        List<String> members,
        String kubernetesServiceDns,
        Path modelDir,
        PlacementPolicy policy,
        int expectedWorkers,
        Duration initialWait,
        Duration heartbeatTimeout,
        Duration drainGrace,
        Duration rebalanceInterval,
        double rebalanceBelow,
        int metricsPort,
        TlsConfig tls,
        int healthPort,
        ScopedTokens adminTokens,
        RecordSigning signingKey,
        int controlPort,
        ControlAccess controlAccess,
        int expectedCoordinators) {

    /** {@code moe coordinator --control-port} default. */
    public static final int DEFAULT_CONTROL_PORT = 50070;

    /** {@code moe coordinator --metrics-port} default. */
    public static final int DEFAULT_METRICS_PORT = 9402;

    public CoordinatorConfig {
        requireNonNull(clusterName, "clusterName is null");
        requireNonNull(host, "host is null");
        requireNonNull(modelDir, "modelDir is null");
        requireNonNull(policy, "policy is null");
        members = List.copyOf(members);
        if (members.isEmpty()) {
            throw new IllegalArgumentException("the member list must name at least this coordinator");
        }
        if (kubernetesServiceDns != null && kubernetesServiceDns.isBlank()) {
            throw new IllegalArgumentException("the Kubernetes service DNS name is blank");
        }
        if (expectedWorkers < 1) {
            throw new IllegalArgumentException("expected workers must be at least 1");
        }
        if (!(rebalanceBelow > 0 && rebalanceBelow <= 1)) {
            throw new IllegalArgumentException("rebalance threshold must be in (0, 1], got " + rebalanceBelow);
        }
        MetricsEndpoint.requirePort(metricsPort);
        if (controlPort < 0 || controlPort > 65535) {
            throw new IllegalArgumentException("control port must be in 0..65535, got " + controlPort);
        }
        controlAccess = controlAccess == null ? ControlAccess.OPEN : controlAccess;
        if (expectedCoordinators < 0) {
            throw new IllegalArgumentException("expected coordinators must not be negative, got " + expectedCoordinators);
        }
        expectedCoordinators = expectedCoordinators == 0 ? members.size() : expectedCoordinators;
        GrpcEndpoint.requireHealthPort(healthPort);
    }

    /** Plaintext Admin API, no health-only port. */
    public CoordinatorConfig(String clusterName, String host, int hazelcastPort, int adminPort, List<String> members,
            String kubernetesServiceDns, Path modelDir, PlacementPolicy policy, int expectedWorkers, Duration initialWait,
            Duration heartbeatTimeout, Duration drainGrace, Duration rebalanceInterval, double rebalanceBelow, int metricsPort) {
        this(clusterName, host, hazelcastPort, adminPort, members, kubernetesServiceDns, modelDir, policy, expectedWorkers,
                initialWait, heartbeatTimeout, drainGrace, rebalanceInterval, rebalanceBelow, metricsPort, null,
                GrpcEndpoint.NO_HEALTH_PORT, null, null, 0, ControlAccess.OPEN, 0);
    }

    /**
     * A single coordinator on loopback for a local cluster: Hazelcast on {@code port}, admin on a free
     * port, workers dead after 3 s of silence, no metrics port.
     */
    public static CoordinatorConfig local(String clusterName, int port, Path modelDir, int expectedWorkers, int minReplicas) {
        return new CoordinatorConfig(clusterName, "127.0.0.1", port, 0, List.of("127.0.0.1:" + port), null, modelDir,
                PlacementPolicy.defaults().withMinReplicas(minReplicas), expectedWorkers, Duration.ofSeconds(10),
                Duration.ofSeconds(3), Duration.ofSeconds(1), Duration.ofSeconds(60), 0.8, MetricsEndpoint.OFF);
    }

    /** Joins the members {@code all} on Hazelcast port {@code port}; the cluster then counts {@code all.size()} coordinators. */
    public CoordinatorConfig withMembers(List<String> all, int port) {
        return new CoordinatorConfig(clusterName, host, port, adminPort, all, kubernetesServiceDns, modelDir, policy, expectedWorkers,
                initialWait, heartbeatTimeout, drainGrace, rebalanceInterval, rebalanceBelow, metricsPort, tls, healthPort, adminTokens, signingKey,
                controlPort, controlAccess, 0);
    }

    public CoordinatorConfig withAdminPort(int port) {
        return new CoordinatorConfig(clusterName, host, hazelcastPort, port, members, kubernetesServiceDns, modelDir, policy, expectedWorkers,
                initialWait, heartbeatTimeout, drainGrace, rebalanceInterval, rebalanceBelow, metricsPort, tls, healthPort, adminTokens, signingKey, controlPort, controlAccess, expectedCoordinators);
    }

    public CoordinatorConfig withInitialWait(Duration d) {
        return new CoordinatorConfig(clusterName, host, hazelcastPort, adminPort, members, kubernetesServiceDns, modelDir, policy, expectedWorkers,
                d, heartbeatTimeout, drainGrace, rebalanceInterval, rebalanceBelow, metricsPort, tls, healthPort, adminTokens, signingKey, controlPort, controlAccess, expectedCoordinators);
    }

    public CoordinatorConfig withHeartbeatTimeout(Duration d) {
        return new CoordinatorConfig(clusterName, host, hazelcastPort, adminPort, members, kubernetesServiceDns, modelDir, policy, expectedWorkers,
                initialWait, d, drainGrace, rebalanceInterval, rebalanceBelow, metricsPort, tls, healthPort, adminTokens, signingKey, controlPort, controlAccess, expectedCoordinators);
    }

    /** How often the leader checks balancedness and looks for workers without experts on its own. */
    public CoordinatorConfig withRebalanceInterval(Duration d) {
        return new CoordinatorConfig(clusterName, host, hazelcastPort, adminPort, members, kubernetesServiceDns, modelDir, policy, expectedWorkers,
                initialWait, heartbeatTimeout, drainGrace, d, rebalanceBelow, metricsPort, tls, healthPort, adminTokens, signingKey, controlPort, controlAccess, expectedCoordinators);
    }

    /** Serves {@code /metrics} on {@code port}: 0 picks a free one, -1 serves none. */
    public CoordinatorConfig withMetricsPort(int port) {
        return new CoordinatorConfig(clusterName, host, hazelcastPort, adminPort, members, kubernetesServiceDns, modelDir, policy, expectedWorkers,
                initialWait, heartbeatTimeout, drainGrace, rebalanceInterval, rebalanceBelow, port, tls, healthPort, adminTokens, signingKey, controlPort, controlAccess, expectedCoordinators);
    }

    /** Serves the Admin API over TLS; null for plaintext. */
    public CoordinatorConfig withTls(TlsConfig newTls) {
        return new CoordinatorConfig(clusterName, host, hazelcastPort, adminPort, members, kubernetesServiceDns, modelDir, policy, expectedWorkers,
                initialWait, heartbeatTimeout, drainGrace, rebalanceInterval, rebalanceBelow, metricsPort, newTls, healthPort, adminTokens, signingKey, controlPort, controlAccess, expectedCoordinators);
    }

    /** Serves gRPC health alone on a plaintext {@code port}: 0 picks a free one, -1 serves none. */
    public CoordinatorConfig withHealthPort(int port) {
        return new CoordinatorConfig(clusterName, host, hazelcastPort, adminPort, members, kubernetesServiceDns, modelDir, policy, expectedWorkers,
                initialWait, heartbeatTimeout, drainGrace, rebalanceInterval, rebalanceBelow, metricsPort, tls, port, adminTokens, signingKey, controlPort, controlAccess, expectedCoordinators);
    }

    /** Requires these bearer tokens on the Admin API; null leaves it open. */
    public CoordinatorConfig withAdminTokens(ScopedTokens tokens) {
        return new CoordinatorConfig(clusterName, host, hazelcastPort, adminPort, members, kubernetesServiceDns, modelDir, policy, expectedWorkers,
                initialWait, heartbeatTimeout, drainGrace, rebalanceInterval, rebalanceBelow, metricsPort, tls, healthPort, tokens, signingKey, controlPort, controlAccess, expectedCoordinators);
    }

    /** Signs the records routers and workers act on with this Ed25519 private key; null leaves them unsigned. */
    public CoordinatorConfig withSigningKey(RecordSigning key) {
        if (key != null && !key.canSign()) {
            throw new IllegalArgumentException("the coordinator needs the private signing key, not the public key");
        }
        return new CoordinatorConfig(clusterName, host, hazelcastPort, adminPort, members, kubernetesServiceDns, modelDir, policy, expectedWorkers,
                initialWait, heartbeatTimeout, drainGrace, rebalanceInterval, rebalanceBelow, metricsPort, tls, healthPort, adminTokens, key, controlPort, controlAccess, expectedCoordinators);
    }

    /** Serves the Control API on {@code port} (0 picks a free one) behind {@code access}'s role tokens. */
    public CoordinatorConfig withControl(int port, ControlAccess access) {
        return new CoordinatorConfig(clusterName, host, hazelcastPort, adminPort, members, kubernetesServiceDns, modelDir, policy, expectedWorkers,
                initialWait, heartbeatTimeout, drainGrace, rebalanceInterval, rebalanceBelow, metricsPort, tls, healthPort, adminTokens, signingKey, port, access, expectedCoordinators);
    }

    /** Counts this many coordinators in the whole cluster (0: the size of the member list); see {@link #majority}. */
    public CoordinatorConfig withExpectedCoordinators(int count) {
        return new CoordinatorConfig(clusterName, host, hazelcastPort, adminPort, members, kubernetesServiceDns, modelDir, policy, expectedWorkers,
                initialWait, heartbeatTimeout, drainGrace, rebalanceInterval, rebalanceBelow, metricsPort, tls, healthPort, adminTokens, signingKey,
                controlPort, controlAccess, count);
    }

    /**
     * Whether the Control API binds each worker to its client certificate (a worker registers only under a
     * host the certificate names as a DNS or IP subject alternative name): whenever the port requires client
     * certificates. It costs nothing that works already, since routers check the same name when they dial the worker.
     */
    public boolean bindsWorkerIdentity() {
        return tls != null && tls.requiresClientCertificates();
    }

    /** Coordinators a side needs to lead and write: more than half of {@code expectedCoordinators}. */
    public int majority() {
        return expectedCoordinators / 2 + 1;
    }

    /** How often workers and routers heartbeat: five times per {@code heartbeatTimeout}, at most every 200 ms. */
    public Duration componentHeartbeat() {
        return Duration.ofMillis(Math.max(200, heartbeatTimeout.toMillis() / 5));
    }
}
