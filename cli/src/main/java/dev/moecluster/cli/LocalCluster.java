package dev.moecluster.cli;

import static java.util.Objects.requireNonNull;

import dev.moecluster.core.model.ModelConfig;
import dev.moecluster.core.placement.ExpertAssignment;
import dev.moecluster.core.placement.ExpertPlacement;
import dev.moecluster.core.tensor.DType;
import dev.moecluster.router.RouterConfig;
import dev.moecluster.router.RouterServer;
import dev.moecluster.worker.CpuBackend;
import dev.moecluster.worker.ExpertBackend;
import dev.moecluster.worker.ExpertWorker;
import dev.moecluster.worker.WorkerConfig;
import dev.moecluster.coordinator.CoordinatorConfig;
import dev.moecluster.coordinator.CoordinatorServer;
import java.io.IOException;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.time.Duration;
import java.util.Map;
import java.util.UUID;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.function.IntFunction;
import java.util.function.UnaryOperator;
import java.util.function.IntToDoubleFunction;

/**
 * N expert workers and a router in one process, each a real gRPC server on its own loopback port,
 * with experts placed round-robin with replicas, or by a coordinator (a real Hazelcast member) that
 * the workers and router join as clients. Every component serves {@code /metrics} on a free port. What {@code moe local} and {@code moe demo} run,
 * and what the cluster tests start.
 */
public final class LocalCluster implements AutoCloseable {
    private final ModelConfig model;
    private final List<ExpertWorker> workers;
    private final ExpertPlacement placement;
    private final RouterServer router;
    private final CoordinatorServer coordinator;

    private LocalCluster(ModelConfig model, List<ExpertWorker> workers, ExpertPlacement placement, RouterServer router,
            CoordinatorServer coordinator) {
        this.model = model;
        this.workers = workers;
        this.placement = placement;
        this.router = router;
        this.coordinator = coordinator;
    }

    /**
     * How to start a local cluster; {@code backends} gives each worker index its backend and
     * {@code throughputs} the rows/s it reports to the planner ({@link WorkerConfig#CALIBRATE} to
     * measure it, as workers do by default). With
     * {@code coordinated}, a coordinator starts too and placement comes from it (workers register and
     * load what they are assigned); otherwise placement is static round-robin.
     */
    public record Options(Path modelDir, int workers, int replicas, int routerPort, DType wireDtype,
            IntFunction<ExpertBackend> backends, boolean coordinated, UnaryOperator<RouterConfig> routerSettings,
            IntToDoubleFunction throughputs) {
        public Options {
            requireNonNull(modelDir, "modelDir is null");
            requireNonNull(backends, "backends is null");
            requireNonNull(routerSettings, "routerSettings is null");
            requireNonNull(throughputs, "throughputs is null");
            if (workers < 1) {
                throw new IllegalArgumentException("--workers must be at least 1");
            }
            if (replicas < 1 || replicas > workers) {
                throw new IllegalArgumentException("--replicas must be between 1 and --workers (" + workers + "), got " + replicas);
            }
        }

        public static Options of(Path modelDir, int workers, int replicas) {
            return new Options(modelDir, workers, replicas, 0, null, i -> new CpuBackend(), false, UnaryOperator.identity(), i -> WorkerConfig.CALIBRATE);
        }

        public Options withCoordinator(boolean on) {
            return new Options(modelDir, workers, replicas, routerPort, wireDtype, backends, on, routerSettings, throughputs);
        }

        public Options withWireDtype(DType dtype) {
            return new Options(modelDir, workers, replicas, routerPort, dtype, backends, coordinated, routerSettings, throughputs);
        }

        public Options withRouterPort(int port) {
            return new Options(modelDir, workers, replicas, port, wireDtype, backends, coordinated, routerSettings, throughputs);
        }

        /** Further router settings (HTTP port, bearer token, ...) applied on top of the local defaults. */
        public Options withRouterSettings(UnaryOperator<RouterConfig> settings) {
            return new Options(modelDir, workers, replicas, routerPort, wireDtype, backends, coordinated,
                    routerSettings.andThen(settings)::apply, throughputs);
        }

        public Options withBackends(IntFunction<ExpertBackend> b) {
            return new Options(modelDir, workers, replicas, routerPort, wireDtype, b, coordinated, routerSettings, throughputs);
        }

        /** Each worker index's reported rows/s: {@link WorkerConfig#CALIBRATE}, 0 (none) or a fixed figure. */
        public Options withThroughputs(IntToDoubleFunction t) {
            return new Options(modelDir, workers, replicas, routerPort, wireDtype, backends, coordinated, routerSettings, t);
        }
    }

    public static LocalCluster start(Options o) throws IOException {
        return o.coordinated() ? startCoordinated(o) : startStatic(o);
    }

    private static LocalCluster startCoordinated(Options o) throws IOException {
        ModelConfig model = ModelConfig.load(o.modelDir());
        CoordinatorConfig cc = CoordinatorConfig.local("moe-local-" + UUID.randomUUID(), freePort(), o.modelDir(),
                o.workers(), o.replicas()).withMetricsPort(0);
        CoordinatorServer coordinator = CoordinatorServer.start(cc);
        List<ExpertWorker> workers = new ArrayList<>();
        RouterServer router = null;
        try {
            for (int i = 0; i < o.workers(); i++) {
                WorkerConfig wc = WorkerConfig.defaults("worker-" + i, o.modelDir(), new ExpertAssignment(Map.of()))
                        .withControlPlane(coordinator.controlPlane(), WorkerConfig.DEFAULT_MEMORY_BYTES).withMetrics(0, true)
                        .withThroughput(o.throughputs().applyAsDouble(i));
                workers.add(ExpertWorker.start(wc, o.backends().apply(i)));
            }
            RouterConfig rc = RouterConfig.defaults(o.modelDir(), ExpertPlacement.none()).withPort(o.routerPort())
                    .withWireDtype(o.wireDtype()).withControlPlane(coordinator.controlPlane()).withMetricsPort(0);
            rc = rc.withMaxInboundMessageBytes(RouterConfig.maxInboundBytesFor(rc.maxTokensPerRequest(), model.hiddenSize()));
            rc = o.routerSettings().apply(rc);
            router = RouterServer.start(rc);
            ExpertPlacement placement = awaitPlacement(router, model, Duration.ofSeconds(60));
            return new LocalCluster(model, workers, placement, router, coordinator);
        } catch (IOException | RuntimeException e) {
            if (router != null) {
                router.close();
            }
            workers.forEach(ExpertWorker::close);
            coordinator.close();
            throw e;
        }
    }

    /** Waits until the router routes with a placement that covers every expert. */
    static ExpertPlacement awaitPlacement(RouterServer router, ModelConfig model, Duration timeout) throws IOException {
        long deadline = System.nanoTime() + timeout.toNanos();
        while (System.nanoTime() < deadline) {
            ExpertPlacement p = router.placement();
            try {
                p.requireCovers(model);
                return p;
            } catch (IllegalArgumentException notYet) {
                try {
                    Thread.sleep(50);
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                    throw new IOException("interrupted waiting for the first placement", e);
                }
            }
        }
        throw new IOException("no placement from the coordinator within " + timeout.toSeconds() + " s");
    }

    /**
     * A loopback port free now and not handed out before by this process: ports are often picked for
     * several servers before any of them binds, and the kernel may offer the same free port twice.
     */
    static int freePort() throws IOException {
        while (true) {
            try (ServerSocket s = new ServerSocket(0, 1, InetAddress.getLoopbackAddress())) {
                if (HANDED_OUT.add(s.getLocalPort())) {
                    return s.getLocalPort();
                }
            }
        }
    }

    private static final java.util.Set<Integer> HANDED_OUT = java.util.concurrent.ConcurrentHashMap.newKeySet();

    private static LocalCluster startStatic(Options o) throws IOException {
        ModelConfig model = ModelConfig.load(o.modelDir());
        // Placement depends only on worker order, so plan with names, start, then use real addresses.
        List<String> names = new ArrayList<>();
        for (int i = 0; i < o.workers(); i++) {
            names.add("worker-" + i);
        }
        ExpertPlacement planned = ExpertPlacement.roundRobin(names, model, o.replicas());
        List<ExpertWorker> workers = new ArrayList<>();
        try {
            for (int i = 0; i < o.workers(); i++) {
                WorkerConfig wc = WorkerConfig.defaults(names.get(i), o.modelDir(), new ExpertAssignment(planned.heldBy(i)))
                        .withMetrics(0, true);
                workers.add(ExpertWorker.start(wc, o.backends().apply(i)));
            }
            ExpertPlacement placement = ExpertPlacement.roundRobin(workers.stream().map(ExpertWorker::address).toList(),
                    model, o.replicas());
            RouterConfig base = RouterConfig.defaults(o.modelDir(), placement).withPort(o.routerPort())
                    .withWireDtype(o.wireDtype()).withMetricsPort(0);
            RouterConfig rc = o.routerSettings().apply(base.withMaxInboundMessageBytes(
                    RouterConfig.maxInboundBytesFor(base.maxTokensPerRequest(), model.hiddenSize())));
            RouterServer router = RouterServer.start(rc);
            return new LocalCluster(model, workers, placement, router, null);
        } catch (IOException | RuntimeException e) {
            workers.forEach(ExpertWorker::close);
            throw e;
        }
    }

    public ModelConfig model() {
        return model;
    }

    public RouterServer router() {
        return router;
    }

    public List<ExpertWorker> workers() {
        return Collections.unmodifiableList(workers);
    }

    /** The placement at start (static, or the coordinator's first). */
    public ExpertPlacement placement() {
        return placement;
    }

    /** The coordinator, or null for a static cluster. */
    public CoordinatorServer coordinator() {
        return coordinator;
    }

    @Override
    public void close() {
        router.close();
        for (ExpertWorker w : workers) {
            w.close();
        }
        if (coordinator != null) {
            coordinator.close();
        }
    }
}
