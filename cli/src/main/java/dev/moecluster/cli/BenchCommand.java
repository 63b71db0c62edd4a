package dev.moecluster.cli;

import dev.moecluster.bench.GenerateLoad;
import dev.moecluster.bench.MoeForwardLoad;
import dev.moecluster.core.model.Architecture;
import dev.moecluster.core.model.ModelConfig;
import dev.moecluster.core.model.ModelGenerator;
import dev.moecluster.core.moe.ReferenceMoeBlock;
import dev.moecluster.core.runner.DecoderModel;
import dev.moecluster.core.tensor.DType;
import dev.moecluster.proto.RouterGrpc;
import dev.moecluster.router.RouterConfig;
import dev.moecluster.router.RouterServer;
import dev.moecluster.router.generate.GenerationConfig;
import dev.moecluster.router.generate.GenerationScheduler;
import dev.moecluster.worker.ExpertBackends;
import dev.moecluster.worker.ExpertWorker;
import io.grpc.ManagedChannel;
import io.grpc.netty.shaded.io.grpc.netty.NettyChannelBuilder;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Locale;
import java.util.Set;
import java.util.concurrent.Callable;
import java.util.concurrent.TimeUnit;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

/** {@code moe bench}: end-to-end benchmarks. */
@Command(name = "bench", mixinStandardHelpOptions = true, description = "Benchmarks; results are recorded in bench/RESULTS.md.",
        subcommands = {BenchCommand.MoeLayer.class, BenchCommand.Generate.class, BenchCommand.Failover.class, BenchCommand.Faults.class,
                BenchCommand.WorkerHost.class, BenchCommand.Planner.class})
final class BenchCommand {
    private BenchCommand() {}

    /** The model and cluster size both benchmarks take. */
    static final class BenchModel {
        @Option(names = "--model", paramLabel = "DIR", description = "Model directory. Default: a generated bf16 model of the size below.")
        Path model;

        @Option(names = "--arch", defaultValue = "mixtral", description = "Architecture of the generated model (default: ${DEFAULT-VALUE}).")
        String arch;

        @Option(names = "--hidden", defaultValue = "1024", description = "Generated model hidden size (default: ${DEFAULT-VALUE}).")
        int hidden;

        @Option(names = "--intermediate", defaultValue = "2816", description = "Generated model expert width (default: ${DEFAULT-VALUE}).")
        int intermediate;

        @Option(names = "--experts", defaultValue = "8", description = "Generated model experts per layer (default: ${DEFAULT-VALUE}).")
        int experts;

        @Option(names = "--workers", defaultValue = "3", description = "Expert workers (default: ${DEFAULT-VALUE}).")
        int workers;

        @Option(names = "--cpu-kernel", defaultValue = "auto",
                description = "The cpu workers' GEMM, as moe worker --cpu-kernel: auto, vector or native (default: ${DEFAULT-VALUE}).")
        String cpuKernel;

        /** The model directory: --model, or a generated bf16 model of the given shape cached under the temp directory. */
        Path resolve() throws Exception {
            if (model != null) {
                return model;
            }
            Architecture a = Architecture.fromCli(arch);
            var spec = new ModelGenerator.Spec(a, 2, hidden, intermediate, experts, 0, 11, DType.BF16, 1);
            Path dir = Path.of(System.getProperty("java.io.tmpdir"), "moe-cluster-bench",
                    a.cliName() + "-h" + hidden + "-i" + intermediate + "-e" + experts);
            if (!Files.exists(dir.resolve("config.json"))) {
                System.out.println("generating benchmark model in " + dir);
                ModelGenerator.generate(spec, dir);
            }
            return dir;
        }
    }

    /** MoeForward throughput and latency through a local cluster vs. the in-process reference, in one run. */
    @Command(name = "moe-layer", mixinStandardHelpOptions = true,
            description = "MoeForward tokens/s and p50/p99 latency through a local cluster vs. the in-process reference in the same run;"
                    + " the data plane's activation goodput next to one raw loopback TCP stream measured in the same run (the wire's"
                    + " ceiling), host CPU per routed row, wire bytes per routed token. A communication-heavy shape:"
                    + " --hidden 4096 --intermediate 16 --concurrency 4.")
    static final class MoeLayer implements Callable<Integer> {
        @Mixin
        BenchModel bench;

        @Option(names = "--replicas", defaultValue = "1", description = "Workers per expert (default: ${DEFAULT-VALUE}).")
        int replicas;

        @Option(names = "--tokens", defaultValue = "256", description = "Tokens per call (default: ${DEFAULT-VALUE}).")
        int tokens;

        @Option(names = "--requests", defaultValue = "60", description = "Measured calls per side (default: ${DEFAULT-VALUE}).")
        int requests;

        @Option(names = "--warmup", defaultValue = "20", description = "Unmeasured calls per side first (default: ${DEFAULT-VALUE}).")
        int warmup;

        @Option(names = "--concurrency", defaultValue = "1", description = "Calls in flight (default: ${DEFAULT-VALUE}).")
        int concurrency;

        @Option(names = "--wire-dtype", description = "Activations on the wire: f32, bf16 or fp8. Default: the checkpoint's dtype.")
        String wireDtype;

        @Option(names = "--backend", defaultValue = "cpu",
                description = "Workers' compute backend: cpu, cuda or auto; the in-process side always runs on the CPU (default: ${DEFAULT-VALUE}).")
        String backend;

        @Option(names = "--channels-per-worker", defaultValue = "1",
                description = "Router connections to each worker, as moe router --channels-per-worker (default: ${DEFAULT-VALUE}).")
        int channelsPerWorker;

        @Override
        public Integer call() throws Exception {
            PrintStream out = System.out;
            Path dir = bench.resolve();
            DType wireChoice = wireDtype == null ? null : DType.parse(wireDtype);
            try (LocalCluster cluster = LocalCluster.start(LocalCluster.Options.of(dir, bench.workers, replicas)
                            .withWireDtype(wireChoice)
                            .withBackends(i -> ExpertBackends.create(backend, bench.cpuKernel)));
                    ReferenceMoeBlock reference = ReferenceMoeBlock.open(dir);
                    RouterServer router = RouterServer.start(RouterConfig.defaults(dir, cluster.placement())
                            .withWireDtype(wireChoice).withChannelsPerWorker(channelsPerWorker))) {
                ModelConfig cfg = cluster.model();
                DType dtype = cfg.dtype() == DType.F32 ? DType.F32 : DType.BF16;
                DType wire = router.wireDtype();
                out.printf("bench moe-layer: %s, hidden %d, %d experts x %d, top-%d; %d %s workers, %d replica(s), %s on the wire, "
                                + "%d connection(s) per worker; %d tokens/call, %d in flight; %d GEMM threads%n",
                        cfg.architecture().hfName(), cfg.hiddenSize(), cfg.numExperts(), cfg.expertIntermediateSize(),
                        cfg.expertsPerToken(), bench.workers, backend, replicas, wire.name().toLowerCase(Locale.ROOT), channelsPerWorker,
                        tokens, concurrency, dev.moecluster.core.kernel.Gemm.parallelism());
                ManagedChannel channel = NettyChannelBuilder.forTarget(router.address()).usePlaintext().build();
                try {
                    var stub = RouterGrpc.newBlockingStub(channel);
                    MoeForwardLoad load = new MoeForwardLoad(cfg, reference);
                    var check = load.runAgainst(stub, new MoeForwardLoad.Options(2, tokens, 1, dtype, 9, true));
                    // as the demo: bit-level agreement is not expected once bf16 (or fp8) is on the wire or in the weights
                    double limit = wire == DType.FP8_E4M3 ? 1e-1 : dtype == DType.F32 && wire == DType.F32 ? 1e-5 : 1e-2;
                    boolean ok = check.maxRelativeError() < limit;
                    out.printf("check: max relative error vs reference %.2e (limit %.0e) %s%n", check.maxRelativeError(), limit,
                            ok ? "OK" : "MISMATCH");
                    if (!ok) {
                        return 1;
                    }
                    var warm = new MoeForwardLoad.Options(warmup, tokens, concurrency, dtype, 3, false);
                    var measured = new MoeForwardLoad.Options(requests, tokens, concurrency, dtype, 4, false);
                    load.runInProcess(warm);
                    MoeForwardLoad.Report local = load.runInProcess(measured);
                    load.runAgainst(stub, warm);
                    var os = (com.sun.management.OperatingSystemMXBean) java.lang.management.ManagementFactory.getOperatingSystemMXBean();
                    long cpuBefore = os.getProcessCpuTime();
                    long rowsBefore = router.stats().rows();
                    long bytesBefore = router.stats().bytesSent() + router.stats().bytesReceived();
                    long busyBefore = cluster.workers().stream().mapToLong(ExpertWorker::busyNanos).sum();
                    long deviceBefore = cluster.workers().stream().mapToLong(ExpertWorker::deviceNanos).sum();
                    MoeForwardLoad.Report remote = load.runAgainst(stub, measured);
                    long busy = cluster.workers().stream().mapToLong(ExpertWorker::busyNanos).sum() - busyBefore;
                    boolean device = cluster.workers().stream().allMatch(w -> w.deviceNanos() >= 0);
                    long deviceNanos = cluster.workers().stream().mapToLong(ExpertWorker::deviceNanos).sum() - deviceBefore;
                    long rows = router.stats().rows() - rowsBefore;
                    long bytes = router.stats().bytesSent() + router.stats().bytesReceived() - bytesBefore;
                    long cpuNanos = os.getProcessCpuTime() - cpuBefore;
                    double tcp = dev.moecluster.bench.LoopbackTcp.streamBytesPerSecond(java.time.Duration.ofSeconds(2));
                    // activation payload both ways: each routed row goes out and comes back
                    double goodput = remote.tokensPerSecond() * cfg.expertsPerToken() * 2.0
                            * dev.moecluster.core.tensor.RowBatch.wireBytes(wire, 1, cfg.hiddenSize());
                    out.println(ClusterReport.throughput("in-process", local));
                    out.println(ClusterReport.throughput("cluster", remote));
                    out.printf("ratio cluster/in-process throughput: %.2f%n", remote.tokensPerSecond() / local.tokensPerSecond());
                    out.printf("wire bytes per routed token (both directions, payload): %.0f (2 x hidden x %d B = %d)%n",
                            bytes / (double) Math.max(1, rows), wire.byteSize(), 2 * cfg.hiddenSize() * wire.byteSize());
                    out.printf(Locale.ROOT, "activation goodput: %.0f MB/s = %.1f %% of one raw loopback TCP stream measured now (%.0f MB/s)%n",
                            goodput / 1e6, 100 * goodput / tcp, tcp / 1e6);
                    out.printf(Locale.ROOT, "host CPU per routed row (client, router, workers and kernels in this process, %d cores): %.1f us%n",
                            Runtime.getRuntime().availableProcessors(), cpuNanos / 1e3 / Math.max(1, rows));
                    if (device) {
                        out.printf(Locale.ROOT, "device kernels: %.1f %% of the workers' backend round time (%.0f of %.0f ms; the"
                                + " rest is the host's part of each round: copies issued, waits, outputs)%n",
                                100.0 * deviceNanos / Math.max(1, busy), deviceNanos / 1e6, busy / 1e6);
                    }
                    out.println("copies per routed row and hop: router packs the row once into the message (gate scale and wire"
                            + " dtype in one pass) -> gRPC frames it (1 copy) -> worker reads it once out of Netty's buffers,"
                            + " parsed in place"
                            + (device ? " into pinned memory -> the copy engine uploads bf16 rows from there (no CPU copy) -> kernels"
                                    + " -> outputs downloaded into the result (no CPU copy)"
                                    : " -> kernel widens it -> output written once in the wire dtype")
                            + " -> framed (1 copy) -> router reads it once, combines from the wire bytes");
                    return 0;
                } finally {
                    channel.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
                }
            }
        }
    }

    /** The host half of a cuda worker's round per routed row, without a GPU. */
    @Command(name = "worker-host", mixinStandardHelpOptions = true,
            description = "Host CPU time per routed row of a cuda worker's round (receive, checks, staging where the wire dtype"
                    + " is not bf16, result), measured without a GPU: plain off-heap memory stands in for pinned memory, and the"
                    + " device's copies and kernels cost the host nothing. Prints one plain copy of a row next to it.")
    static final class WorkerHost implements Callable<Integer> {
        @Option(names = "--hidden", defaultValue = "5120", description = "Row width (default: ${DEFAULT-VALUE}, Llama 4 Scout).")
        int hidden;

        @Option(names = "--rows", defaultValue = "256", description = "Rows per batch (default: ${DEFAULT-VALUE}).")
        int rows;

        @Option(names = "--experts", defaultValue = "8", description = "Experts per batch (default: ${DEFAULT-VALUE}).")
        int experts;

        @Option(names = "--batches", defaultValue = "400", description = "Measured batches (default: ${DEFAULT-VALUE}).")
        int batches;

        @Option(names = "--wire-dtype", defaultValue = "bf16", description = "Activations on the wire (default: ${DEFAULT-VALUE}).")
        String wireDtype;

        @Override
        public Integer call() throws Exception {
            DType wire = DType.parse(wireDtype);
            var r = dev.moecluster.bench.WorkerHostPath.run(hidden, rows, experts, batches, wire);
            System.out.printf(Locale.ROOT, "bench worker-host: hidden %d, %d rows in %d experts per batch, %s on the wire, %d batches%n",
                    hidden, rows, experts, wire.name().toLowerCase(Locale.ROOT), batches);
            System.out.printf(Locale.ROOT, "host time per routed row: %.2f us CPU (%.2f us wall; %.0f MB of activations in and out"
                            + " per CPU second)%n", r.cpuNanosPerRow() / 1e3, r.nanosPerRow() / 1e3,
                    2.0 * dev.moecluster.core.tensor.RowBatch.wireBytes(wire, 1, hidden) / r.cpuNanosPerRow() * 1e3);
            System.out.printf(Locale.ROOT, "ceiling: one plain copy of a row between native buffers: %.2f us; the host path"
                    + " costs %.1f such copies%n", r.copyNanosPerRow() / 1e3, r.copies());
            return 0;
        }
    }

    /** The placement planner on a simulated mixed GPU + CPU cluster: busiest worker's time per step against the ideal. */
    @Command(name = "planner", mixinStandardHelpOptions = true,
            description = "Plans a Qwen3-30B-A3B-shaped model (48 layers × 128 experts) under Zipf load over simulated GPU and CPU"
                    + " workers three ways (balancing time with the speeds known, balancing rows, round-robin) and prints the busiest"
                    + " worker's compute time per step against the ideal (total rows / total speed) and against the best the GPU"
                    + " workers' memory allows. No workers, no network: the planner alone.")
    static final class Planner implements Callable<Integer> {
        @picocli.CommandLine.Spec
        picocli.CommandLine.Model.CommandSpec spec;

        @Option(names = "--gpu-workers", defaultValue = "4", description = "Fast workers (default: ${DEFAULT-VALUE}).")
        int gpuWorkers;

        @Option(names = "--cpu-workers", defaultValue = "16", description = "Slow workers (default: ${DEFAULT-VALUE}).")
        int cpuWorkers;

        @Option(names = "--gpu-speedup", split = ",", defaultValue = "5,20,50",
                description = "A GPU worker's rows/s over a CPU worker's, one row of results each (default: ${DEFAULT-VALUE}).")
        double[] speedups;

        @Option(names = "--min-replicas", split = ",", defaultValue = "1,2", description = "Min replicas, one row each (default: ${DEFAULT-VALUE}).")
        int[] minReplicas;

        @Option(names = "--gpu-memory-ratio", defaultValue = "2",
                description = "Experts a GPU worker holds over a CPU worker's; all workers together hold 1.25× the minimum copies"
                        + " (default: ${DEFAULT-VALUE}).")
        double gpuMemoryRatio;

        @Option(names = "--cpu-rows-per-s", defaultValue = "100000", description = "A CPU worker's expert rows/s (default: ${DEFAULT-VALUE}).")
        double cpuRowsPerSecond;

        @Option(names = "--seed", defaultValue = "42", description = "Seed of the Zipf load (default: ${DEFAULT-VALUE}).")
        long seed;

        @Override
        public Integer call() {
            if (gpuWorkers < 0 || cpuWorkers < 1 || gpuMemoryRatio <= 0 || cpuRowsPerSecond <= 0
                    || java.util.Arrays.stream(speedups).anyMatch(x -> !(x > 0))
                    || java.util.Arrays.stream(minReplicas).anyMatch(r -> r < 1)) {
                throw new picocli.CommandLine.ParameterException(spec.commandLine(),
                        "need --gpu-workers >= 0, --cpu-workers >= 1, and positive speedups, min replicas, memory ratio and rows/s");
            }
            dev.moecluster.coordinator.PlannerSimulation.mixedCluster(System.out, gpuWorkers, cpuWorkers, speedups, minReplicas,
                    gpuMemoryRatio, cpuRowsPerSecond, seed);
            return 0;
        }
    }

    /** Generate tokens/s, time to first token and inter-token latency: cluster with and without overlap vs in-process. */
    @Command(name = "generate", mixinStandardHelpOptions = true,
            description = "Generate tokens/s, TTFT and inter-token latency p50/p99 through a local cluster (ping-pong overlap on and off) vs. the in-process model, in one run.")
    static final class Generate implements Callable<Integer> {
        @Mixin
        BenchModel bench;

        @Option(names = "--concurrency", defaultValue = "8", description = "Streams in flight (default: ${DEFAULT-VALUE}).")
        int concurrency;

        @Option(names = "--streams", defaultValue = "16", description = "Streams per measured side (default: ${DEFAULT-VALUE}).")
        int streams;

        @Option(names = "--prompt-tokens", defaultValue = "32", description = "Prompt length (default: ${DEFAULT-VALUE}).")
        int promptTokens;

        @Option(names = "--max-tokens", defaultValue = "32", description = "Tokens generated per stream (default: ${DEFAULT-VALUE}).")
        int maxTokens;

        @Override
        public Integer call() throws Exception {
            PrintStream out = System.out;
            Path dir = bench.resolve();
            try (LocalCluster cluster = LocalCluster.start(LocalCluster.Options.of(dir, bench.workers, 1)
                            .withBackends(i -> ExpertBackends.create("cpu", bench.cpuKernel)));
                    var noOverlap = RouterServer.start(dev.moecluster.router.RouterConfig
                            .defaults(dir, cluster.placement())
                            .withGeneration(GenerationConfig.defaults().withOverlap(false)));
                    var local = DecoderModel.open(dir);
                    var inProcess = new GenerationScheduler(local, null,
                            GenerationConfig.defaults().withOverlap(false), cluster.model().name(),
                            1 << 20, Set.of())) {
                ModelConfig cfg = cluster.model();
                var o = new GenerateLoad.Options(streams, concurrency, promptTokens, maxTokens, local.vocabSize());
                var warm = new GenerateLoad.Options(concurrency, concurrency, promptTokens, 4, local.vocabSize());
                out.printf("bench generate: %s, hidden %d, %d experts x %d, top-%d; %d workers; %d streams, %d in flight, "
                                + "%d prompt + %d generated tokens each (greedy, ignore_eos)%n",
                        cfg.architecture().hfName(), cfg.hiddenSize(), cfg.numExperts(), cfg.expertIntermediateSize(),
                        cfg.expertsPerToken(), bench.workers, streams, concurrency, promptTokens, maxTokens);
                ManagedChannel a = NettyChannelBuilder.forTarget(cluster.router().address()).usePlaintext().build();
                ManagedChannel b = NettyChannelBuilder.forTarget(noOverlap.address()).usePlaintext().build();
                try {
                    var overlapStub = RouterGrpc.newStub(a);
                    var plainStub = RouterGrpc.newStub(b);
                    GenerateLoad.run(warm, inProcess::submit);
                    var rl = GenerateLoad.run(o, inProcess::submit);
                    GenerateLoad.run(warm, plainStub::generate);
                    var rp = GenerateLoad.run(o, plainStub::generate);
                    GenerateLoad.run(warm, overlapStub::generate);
                    var ro = GenerateLoad.run(o, overlapStub::generate);
                    out.printf("%-22s %12s %11s %11s %11s %11s%n", "", "tokens/s", "TTFT p50", "TTFT p99", "ITL p50", "ITL p99");
                    row(out, "in-process", rl);
                    row(out, "cluster, no overlap", rp);
                    row(out, "cluster, ping-pong", ro);
                    out.printf("ratios: cluster/in-process %.2f (no overlap) %.2f (ping-pong); ping-pong/no overlap %.2f%n",
                            rp.tokensPerSecond() / rl.tokensPerSecond(), ro.tokensPerSecond() / rl.tokensPerSecond(),
                            ro.tokensPerSecond() / rp.tokensPerSecond());
                    return 0;
                } finally {
                    a.shutdownNow();
                    b.shutdownNow();
                }
            }
        }

        private static void row(PrintStream out, String label, GenerateLoad.Report r) {
            out.printf("%-22s %12.1f %8.1f ms %8.1f ms %8.1f ms %8.1f ms%n", label, r.tokensPerSecond(), r.ttftP50() / 1000.0,
                    r.ttftP99() / 1000.0, r.itlP50() / 1000.0, r.itlP99() / 1000.0);
        }
    }

    /** Time from a worker kill to a restored replica count, and the latency bump meanwhile. */
    @Command(name = "failover", mixinStandardHelpOptions = true,
            description = "Kill a worker of a coordinated local cluster under steady MoeForward traffic; report the time until every expert has its replicas again, failed calls, and p50/p99 latency before and during the repair.")
    static final class Failover implements Callable<Integer> {
        @Mixin
        BenchModel bench;

        @Option(names = "--replicas", defaultValue = "2", description = "Workers per expert (default: ${DEFAULT-VALUE}).")
        int replicas;

        @Option(names = "--tokens", defaultValue = "32", description = "Tokens per call (default: ${DEFAULT-VALUE}).")
        int tokens;

        @Option(names = "--concurrency", defaultValue = "2", description = "Calls in flight (default: ${DEFAULT-VALUE}).")
        int concurrency;

        @Option(names = "--before-s", defaultValue = "10", description = "Seconds of traffic measured before the kill (default: ${DEFAULT-VALUE}).")
        int beforeSeconds;

        @Override
        public Integer call() throws Exception {
            PrintStream out = System.out;
            Path dir = bench.resolve();
            try (LocalCluster cluster = LocalCluster.start(LocalCluster.Options.of(dir, bench.workers, replicas).withCoordinator(true))) {
                ModelConfig cfg = cluster.model();
                DType dtype = cfg.dtype() == DType.F32 ? DType.F32 : DType.BF16;
                ManagedChannel channel = NettyChannelBuilder.forTarget(cluster.router().address()).usePlaintext().build();
                var stub = RouterGrpc.newBlockingStub(channel);
                var load = new MoeForwardLoad(cfg, null);
                var samples = new java.util.concurrent.ConcurrentLinkedQueue<long[]>(); // {start nanos, latency micros, ok}
                var running = new java.util.concurrent.atomic.AtomicBoolean(true);
                var o = new MoeForwardLoad.Options(1, tokens, 1, dtype, 5, false);
                List<Thread> threads = new java.util.ArrayList<>();
                for (int c = 0; c < concurrency; c++) {
                    int seed = c;
                    threads.add(Thread.ofPlatform().start(() -> {
                        for (int i = 0; running.get(); i++) {
                            var x = load.input(o, seed * 1_000_000 + i);
                            long t0 = System.nanoTime();
                            boolean ok = true;
                            try {
                                stub.withDeadlineAfter(30, TimeUnit.SECONDS).moeForward(dev.moecluster.proto.MoeForwardRequest
                                        .newBuilder().setLayer(load.layer(i)).setHiddenStates(
                                                dev.moecluster.control.wire.WireTensors.encode(x, dtype)).build());
                            } catch (RuntimeException e) {
                                ok = false;
                            }
                            samples.add(new long[] {t0, (System.nanoTime() - t0) / 1000, ok ? 1 : 0});
                        }
                    }));
                }
                Thread.sleep(beforeSeconds * 1000L);
                String victim = cluster.workers().getFirst().address();
                long kill = System.nanoTime();
                cluster.workers().getFirst().kill();
                long restored = 0;
                while (System.nanoTime() - kill < TimeUnit.SECONDS.toNanos(120)) {
                    if (cluster.router().placement().minReplicas(cfg, java.util.Set.of(victim)) >= replicas) {
                        restored = System.nanoTime();
                        break;
                    }
                    Thread.sleep(20);
                }
                Thread.sleep(2000);
                running.set(false);
                for (Thread t : threads) {
                    t.join();
                }
                channel.shutdownNow();
                long end = restored == 0 ? System.nanoTime() : restored;
                var before = new org.HdrHistogram.Histogram(3);
                var during = new org.HdrHistogram.Histogram(3);
                int failed = 0;
                for (long[] sample : samples) {
                    failed += sample[2] == 0 ? 1 : 0;
                    if (sample[0] < kill) {
                        before.recordValue(sample[1]);
                    } else if (sample[0] <= end) {
                        during.recordValue(sample[1]);
                    }
                }
                out.printf("bench failover: %s, hidden %d, %d workers, %d replicas, %d tokens/call, %d in flight%n",
                        cfg.architecture().hfName(), cfg.hiddenSize(), bench.workers, replicas, tokens, concurrency);
                out.printf("replica count restored %s after the kill%n",
                        restored == 0 ? "NOT within 120 s" : String.format("%.2f s", (restored - kill) / 1e9));
                out.printf("calls: %d, failed: %d%n", samples.size(), failed);
                out.printf("latency before the kill:   p50 %7.2f ms  p99 %7.2f ms  (%d calls)%n", before.getValueAtPercentile(50) / 1000.0,
                        before.getValueAtPercentile(99) / 1000.0, before.getTotalCount());
                out.printf("latency kill -> restored:  p50 %7.2f ms  p99 %7.2f ms  (%d calls)%n", during.getValueAtPercentile(50) / 1000.0,
                        during.getValueAtPercentile(99) / 1000.0, during.getTotalCount());
                return failed == 0 && restored != 0 ? 0 : 1;
            }
        }
    }

    /** The fault matrix: a cluster of processes in network namespaces under steady traffic, one fault after another. */
    @Command(name = "faults", mixinStandardHelpOptions = true,
            description = "Runs each fault of the matrix on a cluster of separate processes, one network namespace per host"
                    + " (3 coordinators, the workers, a router), under steady MoeForward traffic checked against the in-process"
                    + " reference, and prints per fault: failed calls, p50/p99 before, during and after, time to recover, time"
                    + " until the victim's experts were re-placed, the most coordinators leading at once, and healthy workers"
                    + " some coordinator declared dead or suspect. Needs root, iproute2 and nftables. Faults: worker-sigkill,"
                    + " worker-sigstop, data-plane-blackhole, slow-replica, packet-loss, leader-sigkill, leader-partition.")
    static final class Faults implements Callable<Integer> {
        @Mixin
        BenchModel bench;

        @Option(names = "--faults", split = ",", paramLabel = "FAULT,...", description = "Faults to run, in order. Default: all.")
        List<String> faults;

        @Option(names = "--replicas", defaultValue = "2", description = "Workers per expert (default: ${DEFAULT-VALUE}).")
        int replicas;

        @Option(names = "--tokens", defaultValue = "8", description = "Tokens per call (default: ${DEFAULT-VALUE}).")
        int tokens;

        @Option(names = "--concurrency", defaultValue = "2", description = "Calls in flight (default: ${DEFAULT-VALUE}).")
        int concurrency;

        @Option(names = "--before-s", defaultValue = "10", description = "Steady seconds measured before each fault (default: ${DEFAULT-VALUE}).")
        int beforeSeconds;

        @Option(names = "--fault-s", defaultValue = "15", description = "Seconds each fault lasts before its repair (default: ${DEFAULT-VALUE}).")
        int faultSeconds;

        @Option(names = "--after-s", defaultValue = "15", description = "Seconds measured after each repair (default: ${DEFAULT-VALUE}).")
        int afterSeconds;

        @Option(names = "--heap", defaultValue = "512m", description = "-Xmx of each process (default: ${DEFAULT-VALUE}).")
        String heap;

        @Option(names = "--logs", paramLabel = "DIR", description = "Where each process logs. Default: a new folder under the temp directory.")
        Path logs;

        @Override
        public Integer call() throws Exception {
            var unavailable = dev.moecluster.bench.fault.Netns.unavailable();
            if (unavailable.isPresent()) {
                System.err.println("moe bench faults: " + unavailable.get());
                return 2;
            }
            List<dev.moecluster.bench.fault.Fault> matrix = faults == null ? List.of(dev.moecluster.bench.fault.Fault.values())
                    : faults.stream().map(dev.moecluster.bench.fault.Fault::byLabel).toList();
            Path dir = bench.resolve();
            Path logDir = logs != null ? logs : Files.createTempDirectory("moe-fault-logs");
            PrintStream out = System.out;
            out.printf("bench faults: %s in %s, 3 coordinators, %d workers, %d replicas, %d tokens/call, %d in flight; logs in %s%n",
                    dir.getFileName(), "network namespaces", bench.workers, replicas, tokens, concurrency, logDir);
            var o = new dev.moecluster.bench.fault.FaultCluster.Options(dir, 3, bench.workers, replicas, logDir,
                    dev.moecluster.bench.fault.FaultCluster.javaCommand(heap));
            try (var cluster = dev.moecluster.bench.fault.FaultCluster.start(o)) {
                out.println("starting the processes and waiting for the first placement...");
                cluster.awaitSteady(300);
                try (var traffic = new dev.moecluster.bench.fault.SteadyTraffic(cluster.routerAddress(), dir, cluster.model(),
                        tokens, concurrency)) {
                    var results = new dev.moecluster.bench.fault.FaultMatrix(cluster, traffic,
                            new dev.moecluster.bench.fault.FaultMatrix.Timing(beforeSeconds, faultSeconds, afterSeconds), out)
                            .runAll(matrix);
                    dev.moecluster.bench.fault.FaultMatrix.print(results, out);
                    return results.stream().allMatch(r -> r.failed() == 0) ? 0 : 1;
                }
            }
        }
    }
}
