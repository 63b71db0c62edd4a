package dev.moecluster.bench.fault;

import static java.util.Objects.requireNonNull;

import dev.moecluster.core.model.ModelConfig;
import dev.moecluster.core.placement.ExpertPlacement;
import dev.moecluster.proto.AdminGrpc;
import dev.moecluster.proto.AdminStatusRequest;
import dev.moecluster.proto.ClusterStatus;
import dev.moecluster.proto.GetPlacementRequest;
import dev.moecluster.proto.ListWorkersRequest;
import dev.moecluster.proto.RebalanceRequest;
import dev.moecluster.proto.WorkerInfo;
import io.grpc.ManagedChannel;
import io.grpc.netty.shaded.io.grpc.netty.NettyChannelBuilder;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.UUID;
import java.util.concurrent.TimeUnit;

/**
 * A whole cluster as separate processes, one per network namespace: three coordinators, the workers
 * and a router, each started with {@code moe} as an operator would, so a fault can kill, stop or cut
 * off one host. Each worker's data plane goes through a {@link DelayProxy} in the root namespace (the
 * address it advertises), which adds latency on demand; control traffic goes direct.
 */
public final class FaultCluster implements AutoCloseable {
    static final int HAZELCAST_PORT = 5701;
    static final int CONTROL_PORT = 50070;
    static final int ADMIN_PORT = 50071;
    static final int ROUTER_PORT = 50051;
    static final int WORKER_PORT = 51000;

    /**
     * @param model the model directory every process serves
     * @param coordinators coordinator processes (a majority of them keeps leading)
     * @param workers worker processes
     * @param replicas copies of every expert
     * @param logs where each process's output goes ({@code <node>.log})
     * @param moe the command that runs {@code moe}, e.g. {@link #javaCommand}
     */
    public record Options(Path model, int coordinators, int workers, int replicas, Path logs, List<String> moe) {
        public Options {
            requireNonNull(model, "model is null");
            requireNonNull(logs, "logs is null");
            moe = List.copyOf(moe);
            if (coordinators < 1 || workers < replicas || replicas < 1) {
                throw new IllegalArgumentException("need at least one coordinator and as many workers as replicas");
            }
        }
    }

    /** One coordinator's answer to Status and ListWorkers, or {@code reachable = false}. */
    public record CoordinatorView(String node, boolean reachable, String leader, boolean leading, long term, int members,
            long epoch, Map<String, String> workerStates) {
        static CoordinatorView unreachable(String node) {
            return new CoordinatorView(node, false, "", false, 0, 0, 0, Map.of());
        }

        /** "c1 leads, 3 members, epoch 7, workers ACTIVE×3" or "c1 unreachable". */
        public String summary() {
            if (!reachable) {
                return node + " unreachable";
            }
            Map<String, Integer> byState = new TreeMap<>();
            workerStates.values().forEach(s -> byState.merge(s, 1, Integer::sum));
            StringBuilder states = new StringBuilder();
            byState.forEach((s, n) -> states.append(states.isEmpty() ? "" : " ").append(s).append('×').append(n));
            return node + (leading ? " leads" : leader.isEmpty() ? " (no majority)" : " follows") + ", term " + term + ", " + members
                    + " members, epoch " + epoch + ", workers " + states;
        }
    }

    private final Options options;
    private final Netns net;
    private final ModelConfig model;
    private final Map<String, List<String>> commands = new LinkedHashMap<>();
    private final Map<String, Process> processes = new LinkedHashMap<>();
    private final Map<String, DelayProxy> proxies = new LinkedHashMap<>();
    private final Map<String, ManagedChannel> admin = new LinkedHashMap<>();

    private FaultCluster(Options options, Netns net, ModelConfig model) {
        this.options = options;
        this.net = net;
        this.model = model;
    }

    /**
     * The command that starts {@code moe} in a new JVM on this JVM's runtime and class path (which
     * must hold the cli module, as {@code moe.jar} and the cli tests do).
     */
    public static List<String> javaCommand(String heap) {
        String java = ProcessHandle.current().info().command().orElse("java");
        return List.of(java, "-Xmx" + heap, "--add-modules", "jdk.incubator.vector", "--enable-native-access=ALL-UNNAMED",
                "--sun-misc-unsafe-memory-access=allow", "-XX:+UseSerialGC",
                "-cp", System.getProperty("java.class.path"), "dev.moecluster.cli.Moe");
    }

    /** Creates the namespaces and starts every process; {@link #awaitSteady} waits for them to serve. */
    public static FaultCluster start(Options o) throws IOException {
        Files.createDirectories(o.logs());
        Netns net = Netns.create();
        FaultCluster c = new FaultCluster(o, net, ModelConfig.load(o.model()));
        try {
            c.launch();
        } catch (IOException | RuntimeException e) {
            c.close();
            throw e;
        }
        return c;
    }

    private void launch() throws IOException {
        String cluster = "moe-fault-" + UUID.randomUUID();
        List<String> hazelcast = new ArrayList<>();
        List<String> control = new ArrayList<>();
        for (String c : coordinators()) {
            String a = net.add(c);
            hazelcast.add(a + ":" + HAZELCAST_PORT);
            control.add(a + ":" + CONTROL_PORT);
        }
        for (String c : coordinators()) {
            commands.put(c, moe("coordinator", "--model", options.model().toString(), "--cluster-name", cluster,
                    "--host", net.address(c), "--port", String.valueOf(HAZELCAST_PORT), "--members", String.join(",", hazelcast),
                    "--expected-coordinators", String.valueOf(options.coordinators()),
                    "--admin-port", String.valueOf(ADMIN_PORT), "--control-port", String.valueOf(CONTROL_PORT),
                    "--expected-workers", String.valueOf(options.workers()), "--initial-wait-s", "120",
                    "--min-replicas", String.valueOf(options.replicas()), "--metrics-port", "0"));
            admin.put(c, NettyChannelBuilder.forTarget(net.address(c) + ":" + ADMIN_PORT).usePlaintext().build());
        }
        for (int i = 0; i < options.workers(); i++) {
            String w = workers().get(i);
            String a = net.add(w);
            int port = WORKER_PORT + i;
            proxies.put(w, DelayProxy.start(net.hostAddress(), port, new InetSocketAddress(a, port)));
            commands.put(w, moe("worker", "--model", options.model().toString(), "--host", a, "--advertise", net.hostAddress(),
                    "--port", String.valueOf(port), "--id", "worker-" + i, "--coordinators", String.join(",", control),
                    "--metrics-port", "0"));
        }
        String r = net.add("router");
        commands.put("router", moe("router", "--model", options.model().toString(), "--host", r,
                "--port", String.valueOf(ROUTER_PORT), "--http-port", "-1", "--coordinators", String.join(",", control),
                "--metrics-port", "0"));
        for (String node : commands.keySet()) {
            restart(node);
        }
    }

    private List<String> moe(String... args) {
        List<String> cmd = new ArrayList<>(options.moe());
        cmd.addAll(List.of(args));
        return cmd;
    }

    public List<String> coordinators() {
        List<String> out = new ArrayList<>();
        for (int i = 0; i < options.coordinators(); i++) {
            out.add("c" + i);
        }
        return out;
    }

    public List<String> workers() {
        List<String> out = new ArrayList<>();
        for (int i = 0; i < options.workers(); i++) {
            out.add("w" + i);
        }
        return out;
    }

    public ModelConfig model() {
        return model;
    }

    public Netns net() {
        return net;
    }

    public String routerAddress() {
        return net.address("router") + ":" + ROUTER_PORT;
    }

    /** The address a worker registered with, as the placement names it (its proxy's). */
    public String workerAddress(String worker) {
        return net.hostAddress() + ":" + (WORKER_PORT + workers().indexOf(worker));
    }

    public int workerPort(String worker) {
        return WORKER_PORT + workers().indexOf(worker);
    }

    public DelayProxy proxy(String worker) {
        return proxies.get(worker);
    }

    /** Starts the node's process (again, after a kill) with the arguments it first had. */
    public void restart(String node) throws IOException {
        Process old = processes.get(node);
        if (old != null && old.isAlive()) {
            throw new IllegalStateException(node + " is still running");
        }
        Path log = options.logs().resolve(node + ".log");
        processes.put(node, new ProcessBuilder(net.exec(node, commands.get(node))).redirectErrorStream(true)
                .redirectOutput(ProcessBuilder.Redirect.appendTo(log.toFile())).start());
    }

    /** SIGKILL, and waits for the process to be gone. */
    public void kill(String node) throws InterruptedException {
        Process p = processes.get(node);
        p.descendants().forEach(ProcessHandle::destroyForcibly);
        p.destroyForcibly();
        p.waitFor(30, TimeUnit.SECONDS);
    }

    /** SIGSTOP ({@code stop = true}) or SIGCONT to the node's JVM. */
    public void signal(String node, boolean stop) throws IOException {
        Process p = processes.get(node);
        List<String> pids = new ArrayList<>(List.of(String.valueOf(p.pid())));
        p.descendants().forEach(d -> pids.add(String.valueOf(d.pid())));
        List<String> cmd = new ArrayList<>(List.of("kill", stop ? "-STOP" : "-CONT"));
        cmd.addAll(pids);
        Netns.run(cmd);
    }

    public boolean alive(String node) {
        return processes.get(node).isAlive();
    }

    /** Every coordinator's view, each asked with a 2 s deadline (a stopped or cut-off one answers nothing). */
    public List<CoordinatorView> views() {
        List<CoordinatorView> out = new ArrayList<>();
        for (String c : coordinators()) {
            out.add(view(c));
        }
        return out;
    }

    private CoordinatorView view(String c) {
        try {
            var stub = AdminGrpc.newBlockingStub(admin.get(c)).withDeadlineAfter(2, TimeUnit.SECONDS);
            ClusterStatus s = stub.status(AdminStatusRequest.getDefaultInstance());
            Map<String, String> states = new TreeMap<>();
            for (WorkerInfo w : stub.listWorkers(ListWorkersRequest.getDefaultInstance()).getWorkersList()) {
                states.put(w.getAddress(), w.getState());
            }
            return new CoordinatorView(c, true, s.getLeader(), s.getLeading(), s.getLeaderTerm(), s.getMembersCount(),
                    s.getPlacementEpoch(), states);
        } catch (RuntimeException e) {
            return CoordinatorView.unreachable(c);
        }
    }

    /** The placement as the leader has it, or null when no leader answers. */
    public ExpertPlacement placement() {
        for (CoordinatorView v : views()) {
            if (v.leading()) {
                try {
                    String json = AdminGrpc.newBlockingStub(admin.get(v.node())).withDeadlineAfter(2, TimeUnit.SECONDS)
                            .getPlacement(GetPlacementRequest.getDefaultInstance()).getJson();
                    return json.isEmpty() ? null : ExpertPlacement.fromJson(json);
                } catch (RuntimeException e) {
                    return null;
                }
            }
        }
        return null;
    }

    /** The leading coordinator's node, or null. */
    public String leader() {
        return views().stream().filter(CoordinatorView::leading).map(CoordinatorView::node).findFirst().orElse(null);
    }

    /**
     * Waits until every process runs, one coordinator leads all of them, every worker is ACTIVE and
     * holds experts, and every expert has its replicas; asks the leader to rebalance when a
     * (restarted) worker holds nothing. Throws with the coordinators' view if that takes too long.
     */
    public void awaitSteady(long timeoutSeconds) throws InterruptedException {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(timeoutSeconds);
        long nextRebalance = System.nanoTime() + TimeUnit.SECONDS.toNanos(15);
        List<CoordinatorView> views = List.of();
        while (System.nanoTime() < deadline) {
            for (String node : commands.keySet()) {
                if (!alive(node)) {
                    throw new IllegalStateException(node + " exited; see " + options.logs().resolve(node + ".log"));
                }
            }
            views = views();
            boolean agreed = views.stream().allMatch(v -> v.reachable() && v.members() == options.coordinators())
                    && views.stream().filter(CoordinatorView::leading).count() == 1;
            ExpertPlacement p = agreed ? placement() : null;
            boolean active = agreed && views.stream().filter(CoordinatorView::leading).findFirst().orElseThrow().workerStates()
                    .values().stream().filter("ACTIVE"::equals).count() == options.workers();
            if (active && p != null) {
                boolean everyoneHolds = workers().stream().allMatch(w -> holdsExperts(p, workerAddress(w)));
                if (everyoneHolds && p.minReplicas(model, java.util.Set.of()) >= options.replicas()) {
                    return;
                }
                if (!everyoneHolds && System.nanoTime() > nextRebalance) {
                    rebalance();
                    nextRebalance = System.nanoTime() + TimeUnit.SECONDS.toNanos(15);
                }
            }
            Thread.sleep(500);
        }
        throw new IllegalStateException("the cluster did not settle in " + timeoutSeconds + " s: "
                + String.join("; ", views.stream().map(CoordinatorView::summary).toList()) + " (logs in " + options.logs() + ")");
    }

    /** The worker is in the placement and holds at least one expert there. */
    static boolean holdsExperts(ExpertPlacement p, String worker) {
        return p.workers().contains(worker) && !p.heldBy(p.indexOf(worker)).isEmpty();
    }

    /** Asks the leader to rebalance. */
    public void rebalance() {
        String leader = leader();
        if (leader != null) {
            try {
                AdminGrpc.newBlockingStub(admin.get(leader)).withDeadlineAfter(5, TimeUnit.SECONDS)
                        .rebalance(RebalanceRequest.getDefaultInstance());
            } catch (RuntimeException busy) {
                // the next settle round asks again
            }
        }
    }

    @Override
    public void close() {
        for (ManagedChannel ch : admin.values()) {
            ch.shutdownNow();
        }
        for (Process p : processes.values()) {
            p.descendants().forEach(ProcessHandle::destroyForcibly);
            p.destroyForcibly();
        }
        for (Process p : processes.values()) {
            try {
                p.waitFor(10, TimeUnit.SECONDS);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }
        for (DelayProxy proxy : proxies.values()) {
            try {
                proxy.close();
            } catch (IOException ignored) {
                // closing anyway
            }
        }
        net.close();
    }
}
