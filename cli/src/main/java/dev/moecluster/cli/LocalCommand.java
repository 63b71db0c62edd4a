package dev.moecluster.cli;

import dev.moecluster.core.tensor.DType;
import dev.moecluster.worker.CpuBackend;
import dev.moecluster.worker.ExpertBackends;
import dev.moecluster.worker.ExpertWorker;
import java.nio.file.Path;
import java.util.concurrent.Callable;
import java.util.concurrent.CountDownLatch;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

/** {@code moe local}: a whole cluster in one process, each component on its own loopback port. */
@Command(name = "local", mixinStandardHelpOptions = true,
        description = "Run a coordinator, N expert workers and a router in one process (real gRPC and Hazelcast on loopback) until interrupted.")
final class LocalCommand implements Callable<Integer> {
    @picocli.CommandLine.Spec
    picocli.CommandLine.Model.CommandSpec spec;

    @Mixin
    ModelOptions model;

    @Option(names = "--workers", defaultValue = "3", description = "Expert workers to start (default: ${DEFAULT-VALUE}).")
    int workers;

    @Option(names = "--replicas", defaultValue = "1", description = "Workers holding each expert (default: ${DEFAULT-VALUE}).")
    int replicas;

    @Option(names = "--port", defaultValue = "50051", description = "Router port; 0 picks a free one (default: ${DEFAULT-VALUE}).")
    int port;

    @Option(names = "--http-port", defaultValue = "8000",
            description = "Router's OpenAI-compatible HTTP API port; 0 picks a free one, -1 serves none (default: ${DEFAULT-VALUE}).")
    int httpPort;

    @Option(names = "--wire-dtype", paramLabel = "DTYPE", description = "Activations on the wire: f32, bf16 or fp8. Default: the checkpoint's dtype.")
    String wireDtype;

    @Option(names = "--backend", defaultValue = "cpu", description = "Workers' compute backend: cpu, cuda or auto (default: ${DEFAULT-VALUE}).")
    String backend;

    @Option(names = "--cpu-workers", defaultValue = "0",
            description = "More workers on the cpu backend whatever --backend says: a hybrid cluster, where the planner puts hot"
                    + " experts on the fast workers and cold ones on these (default: ${DEFAULT-VALUE}).")
    int cpuWorkers;

    @Option(names = "--throughput-rows-per-s", defaultValue = "-1", paramLabel = "ROWS",
            description = "Expert rows/s every worker reports to the planner: -1 measures each at start (default), 0 reports"
                    + " none, a positive figure is reported as given.")
    double throughput;

    @Override
    public Integer call() throws Exception {
        if (cpuWorkers < 0) {
            throw new picocli.CommandLine.ParameterException(spec.commandLine(), "--cpu-workers must be at least 0");
        }
        if (!(throughput == -1 || throughput >= 0) || Double.isInfinite(throughput)) {
            throw new picocli.CommandLine.ParameterException(spec.commandLine(),
                    "--throughput-rows-per-s must be -1 (measure), 0 (none) or a positive figure, got " + throughput);
        }
        Path dir = model.resolve();
        var options = LocalCluster.Options.of(dir, workers + cpuWorkers, replicas)
                .withBackends(i -> i < workers ? ExpertBackends.create(backend, "auto") : new CpuBackend())
                .withThroughputs(i -> throughput)
                .withCoordinator(true)
                .withRouterPort(port)
                .withRouterSettings(rc -> rc.withHttpPort(httpPort))
                .withWireDtype(wireDtype == null ? null : DType.parse(wireDtype));
        LocalCluster cluster = LocalCluster.start(options);
        CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            cluster.close();
            stopped.countDown();
        }));
        System.out.printf("model   %s (%s) from %s%n", cluster.model().name(), cluster.model().architecture().hfName(), options.modelDir());
        for (ExpertWorker w : cluster.workers()) {
            System.out.printf("worker  %-10s listening on %s, metrics on http://127.0.0.1:%d/metrics, %s%n", w.workerId(),
                    w.address(), w.metricsPort(), AdminCommand.describe(w.throughput()));
        }
        System.out.printf("router  listening on %s (moe.v1.Router, health, reflection), metrics on http://127.0.0.1:%d/metrics%n",
                cluster.router().address(), cluster.router().metricsPort());
        if (cluster.router().httpUrl() != null) {
            System.out.printf("router  OpenAI-compatible API on %s (model \"%s\")%n", cluster.router().httpUrl(), cluster.model().name());
        }
        System.out.printf("coordinator admin API on %s (moe admin status --target %s), placement epoch %d, metrics on http://127.0.0.1:%d/metrics%n",
                cluster.coordinator().adminAddress(), cluster.coordinator().adminAddress(), cluster.placement().epoch(),
                cluster.coordinator().metricsPort());
        System.out.println("serving; press Ctrl-C to stop");
        stopped.await();
        return 0;
    }
}
