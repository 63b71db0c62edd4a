package dev.moecluster.coordinator;

import static java.util.Objects.requireNonNull;

import com.hazelcast.config.Config;
import com.hazelcast.config.JoinConfig;
import com.hazelcast.config.MapConfig;
import com.hazelcast.config.NetworkConfig;
import com.hazelcast.core.Hazelcast;
import com.hazelcast.core.HazelcastInstance;
import dev.moecluster.control.MetricsEndpoint;
import dev.moecluster.control.GrpcEndpoint;
import dev.moecluster.core.model.ModelConfig;
import io.grpc.ServerInterceptors;
import io.grpc.ServerServiceDefinition;
import java.util.List;
import java.io.IOException;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.logging.Logger;

/**
 * A coordinator: a Hazelcast member holding the cluster state (workers, placement, load) in maps with
 * a backup on another member, the leader's control loop, and the gRPC Admin API with health and
 * reflection (ready once the member has joined). Several coordinators form one cluster; the oldest
 * member leads.
 */
public final class CoordinatorServer implements AutoCloseable {
    private static final Logger LOG = Logger.getLogger(CoordinatorServer.class.getName());

    private final CoordinatorConfig config;
    private final HazelcastInstance hz;
    private final Reconciler reconciler;
    private final ScheduledExecutorService loop;
    private final GrpcEndpoint admin;
    private final MetricsEndpoint metrics;

    private CoordinatorServer(CoordinatorConfig config, HazelcastInstance hz, ModelShape shape, MetricsEndpoint metrics)
            throws IOException {
        this.config = config;
        this.hz = hz;
        this.metrics = metrics;
        this.reconciler = new Reconciler(hz, config, shape);
        CoordinatorMetrics.register(metrics.registry(), reconciler);
        this.loop = Executors.newSingleThreadScheduledExecutor(r -> Thread.ofPlatform().name("moe-coordinator").daemon().unstarted(r));
        this.admin = GrpcEndpoint.start(config.host(), config.adminPort(), 4 * 1024 * 1024,
                List.of(adminApi(new AdminService(hz, reconciler, config).bindService(), config)), config.tls(), config.healthPort());
        loop.scheduleWithFixedDelay(reconciler::tick, 200, 250, TimeUnit.MILLISECONDS);
        admin.ready(true); // the Hazelcast member has joined: newHazelcastInstance returns only then
    }

    /** The Admin service behind its bearer tokens when the config has some; health and reflection stay open. */
    private static ServerServiceDefinition adminApi(ServerServiceDefinition service, CoordinatorConfig config) {
        return config.adminTokens() == null ? service
                : ServerInterceptors.intercept(service, config.adminTokens().serverInterceptor(AdminService.READ_ONLY_METHODS));
    }

    /** The Hazelcast member; a taken port is reported with its address and the flag that sets it. */
    private static HazelcastInstance startMember(CoordinatorConfig config) throws IOException {
        try {
            return Hazelcast.newHazelcastInstance(hazelcastConfig(config));
        } catch (RuntimeException e) {
            Throwable root = e;
            while (root.getCause() != null) {
                root = root.getCause();
            }
            if (root instanceof java.net.BindException) {
                throw new IOException("cannot serve the Hazelcast member port on " + config.host() + ":" + config.hazelcastPort()
                        + ": " + root.getMessage() + " (another process has the port? choose another --port)", e);
            }
            throw e;
        }
    }

    public static CoordinatorServer start(CoordinatorConfig config) throws IOException {
        requireNonNull(config, "config is null");
        ModelShape shape = ModelShape.of(ModelConfig.load(config.modelDir()));
        HazelcastInstance hz = startMember(config);
        MetricsEndpoint metrics = null;
        try {
            metrics = MetricsEndpoint.start("coordinator", config.host(), config.metricsPort());
            CoordinatorServer server = new CoordinatorServer(config, hz, shape, metrics);
            LOG.info(() -> "coordinator member " + config.host() + ":" + config.hazelcastPort() + " of cluster '"
                    + config.clusterName() + "' (" + hz.getCluster().getMembers().size() + " member(s)), admin API on "
                    + server.adminAddress()
                    + (config.tls() == null ? "" : config.tls().requiresClientCertificates() ? " (mutual TLS)" : " (TLS)")
                    + (config.adminTokens() == null ? "" : config.adminTokens().read() == null ? ", write token required"
                            : ", read or write token required")
                    + (server.healthPort() == GrpcEndpoint.NO_HEALTH_PORT ? "" : ", health on port " + server.healthPort())
                    + (server.metricsPort() == MetricsEndpoint.OFF ? "" : ", metrics on port " + server.metricsPort()));
            return server;
        } catch (IOException | RuntimeException e) {
            if (metrics != null) {
                metrics.close();
            }
            hz.shutdown();
            throw e;
        }
    }

    /** The Hazelcast member configuration for {@code c}; package-private for the test that checks it. */
    static Config hazelcastConfig(CoordinatorConfig c) {
        Config config = new Config();
        config.setClusterName(c.clusterName());
        config.setInstanceName("moe-coordinator-" + c.host() + "-" + c.hazelcastPort() + "-" + System.nanoTime());
        config.setProperty("hazelcast.logging.type", "jdk");
        config.setProperty("hazelcast.phone.home.enabled", "false");
        config.setProperty("hazelcast.shutdownhook.enabled", "false");
        config.getJetConfig().setEnabled(false);
        NetworkConfig network = config.getNetworkConfig();
        network.setPort(c.hazelcastPort()).setPortAutoIncrement(false);
        network.getInterfaces().setEnabled(true).addInterface(c.host());
        // without this the member picks the interface above only for its address and still listens on all of them
        config.setProperty("hazelcast.socket.bind.any", "false");
        network.setPublicAddress(c.host() + ":" + c.hazelcastPort());
        JoinConfig join = network.getJoin();
        join.getMulticastConfig().setEnabled(false);
        join.getAutoDetectionConfig().setEnabled(false);
        if (c.kubernetesServiceDns() != null) {
            // the headless Service lists every member pod, ready or not: Hazelcast's Kubernetes discovery
            // in DNS lookup mode needs neither API access nor a member list that changes with scaling
            join.getTcpIpConfig().setEnabled(false);
            join.getKubernetesConfig().setEnabled(true)
                    .setProperty("service-dns", c.kubernetesServiceDns())
                    .setProperty("service-port", Integer.toString(c.hazelcastPort()));
        } else {
            join.getTcpIpConfig().setEnabled(true).setMembers(c.members());
        }
        // every state map keeps one synchronous backup on another member, so a coordinator can die
        config.addMapConfig(new MapConfig("moe.*").setBackupCount(1));
        return config;
    }

    public String adminAddress() {
        return config.host() + ":" + admin.port();
    }

    public int adminPort() {
        return admin.port();
    }

    /** Port of the plaintext health-only server, or -1 when there is none. */
    public int healthPort() {
        return admin.healthPort();
    }

    /** Port of {@code /metrics}, or -1 when none is served. */
    public int metricsPort() {
        return metrics.port();
    }

    public boolean isLeader() {
        return reconciler.isLeader();
    }

    /** The Hazelcast instance, for tests that inspect the shared maps. */
    public HazelcastInstance hazelcast() {
        return hz;
    }

    /** Stops at once, as a crashed process would (no graceful leave). */
    public void kill() {
        loop.shutdownNow();
        admin.kill();
        hz.getLifecycleService().terminate();
        metrics.close();
    }

    public void awaitTermination() throws InterruptedException {
        admin.awaitTermination();
    }

    @Override
    public void close() {
        loop.shutdownNow();
        admin.close();
        hz.shutdown();
        metrics.close();
    }
}
