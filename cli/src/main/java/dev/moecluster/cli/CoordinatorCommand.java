package dev.moecluster.cli;

import dev.moecluster.control.BearerToken;
import dev.moecluster.control.ControlAccess;
import dev.moecluster.control.RecordSigning;
import dev.moecluster.control.ScopedTokens;
import dev.moecluster.coordinator.CoordinatorConfig;
import dev.moecluster.coordinator.CoordinatorServer;
import dev.moecluster.coordinator.PlacementPolicy;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.Callable;
import picocli.CommandLine.ArgGroup;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

/** {@code moe coordinator}: one coordinator, a Hazelcast member of the control plane. */
@Command(name = "coordinator", mixinStandardHelpOptions = true,
        description = "Run a coordinator: a Hazelcast member holding the worker registry, placement and load; the oldest member plans and rolls out placements; serves the Control API (workers, routers) and the Admin API (operators).")
final class CoordinatorCommand implements Callable<Integer> {
    @Mixin
    ModelOptions model;

    @Option(names = "--cluster-name", defaultValue = "moe-cluster", description = "Hazelcast cluster name: coordinators with different names never join (default: ${DEFAULT-VALUE}).")
    String clusterName;

    @Option(names = "--host", defaultValue = "127.0.0.1", description = "Address to bind: the Hazelcast member, the Control API and the Admin API listen on this interface only; keep it on the cluster network (default: ${DEFAULT-VALUE}).")
    String host;

    @Option(names = "--metrics-port", defaultValue = "9402",
            description = "Prometheus /metrics port; 0 picks a free one, -1 serves none (default: ${DEFAULT-VALUE}).")
    int metricsPort;

    @Option(names = "--port", defaultValue = "5701", description = "Hazelcast member port (default: ${DEFAULT-VALUE}).")
    int port;

    @ArgGroup(exclusive = true)
    Discovery discovery;

    /** How this member finds the others: a fixed list, or a Kubernetes headless Service. */
    static final class Discovery {
        @Option(names = "--members", split = ",", paramLabel = "HOST:PORT,...", description = "All coordinators, this one included. Default: only this one.")
        List<String> members;

        @Option(names = "--kubernetes-service-dns", paramLabel = "NAME",
                description = "Find the other coordinators through the DNS records of this headless Service, e.g. moe-coordinator-headless.moe.svc.cluster.local (Hazelcast's Kubernetes discovery; instead of --members).")
        String kubernetesServiceDns;
    }

    @Option(names = "--expected-coordinators", defaultValue = "0", paramLabel = "N",
            description = "Coordinators in the whole cluster: a side of a network split with fewer than a majority of them stops leading and writing, so two leaders never write at once; 0 counts --members (default: ${DEFAULT-VALUE}; with --kubernetes-service-dns give the StatefulSet's replicas).")
    int expectedCoordinators;

    @Option(names = "--admin-port", defaultValue = "50071", description = "gRPC Admin API port (default: ${DEFAULT-VALUE}).")
    int adminPort;

    @Option(names = "--control-port", defaultValue = "50070",
            description = "gRPC Control API port: workers and routers register, heartbeat and follow assignments and the placement here (their --coordinators); Hazelcast's port admits coordinators only (default: ${DEFAULT-VALUE}).")
    int controlPort;

    @Option(names = "--worker-token-file", paramLabel = "FILE",
            description = "Require this token (one per line, read again within 10 s of a change) of workers on the Control API: registering, heartbeating, watching assignments; missing or wrong gets UNAUTHENTICATED, a router's token PERMISSION_DENIED. Give workers the same file as --control-token-file.")
    Path workerTokenFile;

    @Option(names = "--router-token-file", paramLabel = "FILE",
            description = "Require this token of routers on the Control API: heartbeats with routed load, watching the placement; a worker's token gets PERMISSION_DENIED. Give routers the same file as --control-token-file.")
    Path routerTokenFile;

    @Option(names = "--health-port", defaultValue = "-1",
            description = "Extra plaintext port serving only gRPC health, for probes when the Admin API port requires mutual TLS; 0 picks a free one, -1 serves none (default: ${DEFAULT-VALUE}).")
    int healthPort;

    @Mixin
    ServerTlsOptions tls;

    @Option(names = "--admin-token-file", paramLabel = "FILE",
            description = "Require a bearer token on the Admin API: the tokens in FILE (one per line, read again within 10 s of a change) may call everything (write scope: drain, undrain, rebalance, and every view); missing or wrong gets UNAUTHENTICATED. Health and reflection stay open.")
    Path adminTokenFile;

    @Option(names = "--admin-read-token-file", paramLabel = "FILE",
            description = "Tokens in FILE may call only the views (read scope: status, workers, placement, load); a write call with one gets PERMISSION_DENIED. Needs --admin-token-file.")
    Path adminReadTokenFile;

    @Option(names = "--signing-key", paramLabel = "FILE",
            description = "Ed25519 private key (PEM PKCS#8, openssl genpkey -algorithm ed25519): the leader signs the placement, rollout and assignment records with it and replaces placement records it did not sign; give routers and workers the public key (--placement-public-key).")
    Path signingKey;

    @Option(names = "--expected-workers", defaultValue = "1", description = "The first placement waits for this many workers, or --initial-wait-s (default: ${DEFAULT-VALUE}).")
    int expectedWorkers;

    @Option(names = "--initial-wait-s", defaultValue = "30", description = "Then places experts on whoever registered (default: ${DEFAULT-VALUE}).")
    long initialWaitSeconds;

    @Option(names = "--min-replicas", defaultValue = "1", description = "Copies of every expert, on distinct workers (default: ${DEFAULT-VALUE}).")
    int minReplicas;

    @Option(names = "--migration-threshold", defaultValue = "0.05", description = "Move experts only for a balancedness gain above this (default: ${DEFAULT-VALUE}).")
    double migrationThreshold;

    @Option(names = "--heartbeat-timeout-ms", defaultValue = "5000", description = "A worker silent this long is dead, counted from when the leader began watching the registry without a pause (default: ${DEFAULT-VALUE}).")
    long heartbeatTimeoutMs;

    @Option(names = "--drain-grace-ms", defaultValue = "2000", description = "Old copies stay this long after routers switch epochs (default: ${DEFAULT-VALUE}).")
    long drainGraceMs;

    @Option(names = "--rebalance-interval-s", defaultValue = "60", description = "How often the leader checks on its own for low balancedness (--rebalance-below) and for workers that hold no experts (joined or restarted), and rebalances (default: ${DEFAULT-VALUE}).")
    long rebalanceIntervalSeconds;

    @Option(names = "--rebalance-below", defaultValue = "0.8", description = "Rebalance automatically when mean/max worker load falls below this (default: ${DEFAULT-VALUE}).")
    double rebalanceBelow;

    private ScopedTokens adminTokens() {
        if (adminTokenFile == null) {
            if (adminReadTokenFile != null) {
                throw new IllegalArgumentException("--admin-read-token-file needs --admin-token-file (else no one could drain or rebalance)");
            }
            return null;
        }
        return new ScopedTokens(BearerToken.readFrom(adminTokenFile),
                adminReadTokenFile == null ? null : BearerToken.readFrom(adminReadTokenFile));
    }

    @Override
    public Integer call() throws Exception {
        List<String> members = discovery == null ? null : discovery.members;
        List<String> all = members == null || members.isEmpty() ? List.of(host + ":" + port) : members;
        String serviceDns = discovery == null ? null : discovery.kubernetesServiceDns;
        var policy = PlacementPolicy.defaults().withMinReplicas(minReplicas).withMigrationThreshold(migrationThreshold);
        var config = new CoordinatorConfig(clusterName, host, port, adminPort, all, serviceDns, model.resolve(), policy,
                expectedWorkers, Duration.ofSeconds(initialWaitSeconds), Duration.ofMillis(heartbeatTimeoutMs),
                Duration.ofMillis(drainGraceMs), Duration.ofSeconds(rebalanceIntervalSeconds), rebalanceBelow, metricsPort)
                .withTls(tls.resolve()).withHealthPort(healthPort).withAdminTokens(adminTokens())
                .withSigningKey(signingKey == null ? null : RecordSigning.signingKey(signingKey))
                .withControl(controlPort, new ControlAccess(workerTokenFile == null ? null : BearerToken.readFrom(workerTokenFile),
                        routerTokenFile == null ? null : BearerToken.readFrom(routerTokenFile)))
                .withExpectedCoordinators(expectedCoordinators);
        CoordinatorServer server = CoordinatorServer.start(config);
        Sigterm sigterm = Sigterm.handle("coordinator", server::close, server::close);
        System.out.printf("coordinator %s:%d in cluster '%s' (members %s), control API on %s, admin API on %s%n", host, port,
                clusterName, serviceDns == null ? all : "from DNS " + serviceDns, server.controlAddress(), server.adminAddress());
        server.awaitTermination();
        sigterm.awaitGracefulStop();
        return 0;
    }
}
