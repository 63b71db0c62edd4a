package dev.moecluster.coordinator;

import static java.util.Objects.requireNonNull;

import com.hazelcast.config.AdvancedNetworkConfig;
import com.hazelcast.config.Config;
import com.hazelcast.config.InterfacesConfig;
import com.hazelcast.config.JoinConfig;
import com.hazelcast.config.MapConfig;
import com.hazelcast.config.ServerSocketEndpointConfig;
import com.hazelcast.config.SplitBrainProtectionConfig;
import com.hazelcast.splitbrainprotection.SplitBrainProtectionOn;
import com.hazelcast.core.Hazelcast;
import com.hazelcast.core.HazelcastInstance;
import dev.moecluster.control.ControlPlaneConfig;
import dev.moecluster.control.GrpcEndpoint;
import dev.moecluster.control.MetricsEndpoint;
import dev.moecluster.control.PeerIdentity;
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
 * a backup on another member, the leader's control loop, the gRPC Control API workers and routers
 * reach the cluster through, and the gRPC Admin API with health and reflection (ready once the member
 * has joined). Several coordinators form one cluster; the oldest member leads. Hazelcast's port speaks
 * only the member protocol: no Hazelcast client, rogue or not, can connect to it.
 */
public final class CoordinatorServer implements AutoCloseable {
    private static final Logger LOG = Logger.getLogger(CoordinatorServer.class.getName());

    private final CoordinatorConfig config;
    private final HazelcastInstance hz;
    private final Reconciler reconciler;
    private final ScheduledExecutorService loop;
    private final GrpcEndpoint admin;
    private final ControlService controlService;
    private final GrpcEndpoint control;
    private final MetricsEndpoint metrics;

    private CoordinatorServer(CoordinatorConfig config, HazelcastInstance hz, ModelShape shape, MetricsEndpoint metrics)
            throws IOException {
        this.config = config;
        this.hz = hz;
        this.metrics = metrics;
        this.reconciler = new Reconciler(hz, config, shape);
        CoordinatorMetrics.Requests requests = CoordinatorMetrics.register(metrics.registry(), reconciler);
        this.loop = Executors.newSingleThreadScheduledExecutor(r -> Thread.ofPlatform().name("moe-coordinator").daemon().unstarted(r));
        this.controlService = new ControlService(hz, shape, config.bindsWorkerIdentity());
        this.control = GrpcEndpoint.start(config.host(), config.controlPort(), MAX_CONTROL_MESSAGE_BYTES,
                List.of(ServerInterceptors.intercept(controlService, config.controlAccess().serverInterceptor(), PeerIdentity.capture())),
                config.tls(), GrpcEndpoint.NO_HEALTH_PORT, requests.of(CoordinatorMetrics.CONTROL_API));
        try {
            this.admin = GrpcEndpoint.start(config.host(), config.adminPort(), 4 * 1024 * 1024,
                    List.of(adminApi(new AdminService(hz, reconciler, config).bindService(), config)), config.tls(), config.healthPort(),
                    requests.of(CoordinatorMetrics.ADMIN_API));
        } catch (IOException | RuntimeException e) {
            control.kill();
            throw e;
        }
        loop.scheduleWithFixedDelay(reconciler::tick, 200, 250, TimeUnit.MILLISECONDS);
        admin.ready(true); // the Hazelcast member has joined: newHazelcastInstance returns only then
        control.ready(true);
    }

    private static final String MAJORITY = "moe-majority";
    /** A member silent this long leaves the member list (its side of a split stops counting it). */
    static final long MEMBER_TIMEOUT_SECONDS = 10;

    /** Control messages carry JSON records; a large model's load report is a few hundred KiB. */
    private static final int MAX_CONTROL_MESSAGE_BYTES = 16 * 1024 * 1024;

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
                    + ", control API on port " + server.controlPort()
                    + (config.bindsWorkerIdentity() ? " (workers register only hosts their certificates name)" : "")
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
        // the advanced network config with a member endpoint alone: the port speaks the member protocol
        // only, so no Hazelcast client (which Hazelcast open source cannot authenticate) gets in
        AdvancedNetworkConfig network = config.getAdvancedNetworkConfig().setEnabled(true);
        ServerSocketEndpointConfig member = new ServerSocketEndpointConfig();
        member.setPort(c.hazelcastPort()).setPortAutoIncrement(false);
        member.setInterfaces(new InterfacesConfig().setEnabled(true).addInterface(c.host()));
        member.setPublicAddress(c.host() + ":" + c.hazelcastPort());
        network.setMemberEndpointConfig(member);
        // without this the member picks the interface above only for its address and still listens on all of them
        config.setProperty("hazelcast.socket.bind.any", "false");
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
        // a side of a split with fewer than a majority of the coordinators cannot write the state (and its
        // oldest member does not lead: Reconciler.isLeader); when the sides merge, the majority's records,
        // the only ones written meanwhile, stay
        MapConfig maps = new MapConfig("moe.*").setBackupCount(1); // a synchronous backup: a coordinator can die
        if (c.majority() > 1) { // one coordinator alone is its own majority
            config.addSplitBrainProtectionConfig(new SplitBrainProtectionConfig(MAJORITY, true, c.majority())
                    .setProtectOn(SplitBrainProtectionOn.WRITE));
            maps.setSplitBrainProtectionName(MAJORITY);
        }
        config.addMapConfig(maps);
        // a partitioned member is noticed in seconds, not Hazelcast's default minute, and sides that can
        // reach each other again merge within half a minute instead of five
        config.setProperty("hazelcast.heartbeat.interval.seconds", "1");
        config.setProperty("hazelcast.max.no.heartbeat.seconds", Long.toString(MEMBER_TIMEOUT_SECONDS));
        config.setProperty("hazelcast.merge.first.run.delay.seconds", "20");
        config.setProperty("hazelcast.merge.next.run.delay.seconds", "10");
        return config;
    }

    /** {@code host:port} of the Control API. */
    public String controlAddress() {
        return config.host() + ":" + control.port();
    }

    public int controlPort() {
        return control.port();
    }

    /** What a worker or router needs to reach this coordinator alone: its control address and heartbeat period, plaintext, no token. */
    public ControlPlaneConfig controlPlane() {
        return ControlPlaneConfig.of(List.of(controlAddress())).withHeartbeatInterval(config.componentHeartbeat());
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
        control.kill();
        hz.getLifecycleService().terminate();
        metrics.close();
    }

    public void awaitTermination() throws InterruptedException {
        admin.awaitTermination();
    }

    @Override
    public void close() {
        loop.shutdownNow();
        controlService.close();
        control.close();
        admin.close();
        hz.shutdown();
        metrics.close();
    }
}
