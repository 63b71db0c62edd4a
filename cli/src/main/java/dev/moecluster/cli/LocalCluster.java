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
import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.function.IntFunction;

/**
 * N expert workers and a router in one process, each a real gRPC server on its own loopback port,
 * with experts placed round-robin with replicas. What {@code moe local} and {@code moe demo} run,
 * and what the cluster tests start.
 */
public final class LocalCluster implements AutoCloseable {
    private final ModelConfig model;
    private final List<ExpertWorker> workers;
    private final ExpertPlacement placement;
    private final RouterServer router;

    private LocalCluster(ModelConfig model, List<ExpertWorker> workers, ExpertPlacement placement, RouterServer router) {
        this.model = model;
        this.workers = workers;
        this.placement = placement;
        this.router = router;
    }

    /** How to start a local cluster; {@code backends} gives each worker index its backend. */
    public record Options(Path modelDir, int workers, int replicas, int routerPort, DType wireDtype,
            IntFunction<ExpertBackend> backends) {
        public Options {
            requireNonNull(modelDir, "modelDir is null");
            requireNonNull(backends, "backends is null");
            if (workers < 1) {
                throw new IllegalArgumentException("--workers must be at least 1");
            }
            if (replicas < 1 || replicas > workers) {
                throw new IllegalArgumentException("--replicas must be between 1 and --workers (" + workers + "), got " + replicas);
            }
        }

        public static Options of(Path modelDir, int workers, int replicas) {
            return new Options(modelDir, workers, replicas, 0, null, i -> new CpuBackend());
        }

        public Options withWireDtype(DType dtype) {
            return new Options(modelDir, workers, replicas, routerPort, dtype, backends);
        }

        public Options withRouterPort(int port) {
            return new Options(modelDir, workers, replicas, port, wireDtype, backends);
        }

        public Options withBackends(IntFunction<ExpertBackend> b) {
            return new Options(modelDir, workers, replicas, routerPort, wireDtype, b);
        }
    }

    public static LocalCluster start(Options o) throws IOException {
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
                WorkerConfig wc = WorkerConfig.defaults(names.get(i), o.modelDir(), new ExpertAssignment(planned.heldBy(i)));
                workers.add(ExpertWorker.start(wc, o.backends().apply(i)));
            }
            ExpertPlacement placement = ExpertPlacement.roundRobin(workers.stream().map(ExpertWorker::address).toList(),
                    model, o.replicas());
            RouterConfig rc = RouterConfig.defaults(o.modelDir(), placement).withPort(o.routerPort()).withWireDtype(o.wireDtype());
            RouterServer router = RouterServer.start(rc);
            return new LocalCluster(model, workers, placement, router);
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

    public ExpertPlacement placement() {
        return placement;
    }

    @Override
    public void close() {
        router.close();
        for (ExpertWorker w : workers) {
            w.close();
        }
    }
}
