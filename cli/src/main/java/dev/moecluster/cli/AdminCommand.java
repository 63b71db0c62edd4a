package dev.moecluster.cli;

import com.google.protobuf.MessageOrBuilder;
import com.google.protobuf.util.JsonFormat;
import dev.moecluster.control.BearerToken;
import dev.moecluster.coordinator.MemorySize;
import dev.moecluster.core.placement.ExpertPlacement;
import dev.moecluster.proto.AdminGrpc;
import dev.moecluster.proto.AdminStatusRequest;
import dev.moecluster.proto.ClusterStatus;
import dev.moecluster.proto.DrainRequest;
import dev.moecluster.proto.GetLoadRequest;
import dev.moecluster.proto.GetPlacementRequest;
import dev.moecluster.proto.LayerLoad;
import dev.moecluster.proto.LoadInfo;
import dev.moecluster.proto.ListWorkersRequest;
import dev.moecluster.proto.PlacementInfo;
import dev.moecluster.proto.RebalanceRequest;
import dev.moecluster.proto.UndrainRequest;
import dev.moecluster.proto.WorkerInfo;
import dev.moecluster.proto.WorkerList;
import dev.moecluster.proto.WorkerTime;
import io.grpc.ManagedChannel;
import java.io.PrintStream;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import java.util.concurrent.TimeUnit;
import java.util.function.Function;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

/** {@code moe admin}: operator views and actions against a coordinator's Admin API. */
@Command(name = "admin", mixinStandardHelpOptions = true,
        description = "Operate a cluster through a coordinator: status, workers, placement, load, drain, undrain, rebalance.",
        subcommands = {AdminCommand.StatusCmd.class, AdminCommand.WorkersCmd.class, AdminCommand.PlacementCmd.class,
            AdminCommand.LoadCmd.class, AdminCommand.DrainCmd.class, AdminCommand.UndrainCmd.class, AdminCommand.RebalanceCmd.class})
final class AdminCommand {
    private AdminCommand() {}

    /** Options every admin command takes. */
    abstract static class Base implements Callable<Integer> {
        @Option(names = "--target", defaultValue = "127.0.0.1:50071", description = "A coordinator's Admin API (default: ${DEFAULT-VALUE}).")
        String target;

        @Option(names = "--json", description = "Print JSON instead of a table.")
        boolean json;

        @Mixin
        ClientTlsOptions tls;

        @Option(names = "--token-file", paramLabel = "FILE",
                description = "Send the bearer token in FILE (its first line), for a coordinator started with --admin-token-file: a write token for drain, undrain and rebalance, a read or write token for the views.")
        Path tokenFile;

        final PrintStream out = System.out;

        <T> T call(Function<AdminGrpc.AdminBlockingStub, T> rpc) throws InterruptedException {
            ManagedChannel channel = tls.channel(target);
            try {
                AdminGrpc.AdminBlockingStub stub = AdminGrpc.newBlockingStub(channel).withDeadlineAfter(15, TimeUnit.SECONDS);
                if (tokenFile != null) {
                    stub = stub.withCallCredentials(BearerToken.readFrom(tokenFile).callCredentials());
                }
                return rpc.apply(stub);
            } finally {
                channel.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
            }
        }

        void printJson(MessageOrBuilder m) throws Exception {
            out.println(JsonFormat.printer().alwaysPrintFieldsWithNoPresence().print(m));
        }
    }

    @Command(name = "status", mixinStandardHelpOptions = true, description = "Leader, members, placement epoch, rollout, balancedness, workers by state.")
    static final class StatusCmd extends Base {
        @Override
        public Integer call() throws Exception {
            ClusterStatus s = call(stub -> stub.status(AdminStatusRequest.getDefaultInstance()));
            if (json) {
                printJson(s);
                return 0;
            }
            out.printf("model            %s%n", s.getModel());
            out.printf("leader           %s%n", s.getLeader().isEmpty()
                    ? "none (this coordinator's side has no majority of the coordinators)"
                    : s.getLeader() + (s.getLeading() ? " (this coordinator)" : ""));
            out.printf("members          %s%n", String.join(", ", s.getMembersList()));
            out.printf("placement epoch  %d (rollout: %s)%n", s.getPlacementEpoch(), s.getRollout());
            out.printf("min replicas     %d%n", s.getMinReplicas());
            out.printf("balancedness     %.3f (mean/max worker load over the last minute; ideal/busiest worker time where workers"
                    + " differ in speed)%n", s.getBalancedness());
            out.printf("workers          %s%n", s.getWorkersByStateMap());
            return 0;
        }
    }

    @Command(name = "workers", mixinStandardHelpOptions = true, description = "Registered workers with state, experts, memory and load.")
    static final class WorkersCmd extends Base {
        @Override
        public Integer call() throws Exception {
            WorkerList list = call(stub -> stub.listWorkers(ListWorkersRequest.getDefaultInstance()));
            if (json) {
                printJson(list);
                return 0;
            }
            out.printf("%-12s %-21s %-8s %-9s %8s %23s %12s %10s  %s%n", "worker", "address", "backend", "state", "experts",
                    "memory used / budget", "load tokens", "heartbeat", "rows/s: planned (small batch, large batch, live)");
            for (WorkerInfo w : list.getWorkersList()) {
                out.printf("%-12s %-21s %-8s %-9s %8d %23s %12d %7d ms  %s%n", w.getId(), w.getAddress(), w.getBackend(),
                        w.getState(), w.getExperts(), MemorySize.format(w.getMemoryUsedBytes()) + " / "
                                + MemorySize.format(w.getMemoryBytes()), w.getLoadTokens(), w.getHeartbeatAgeMs(), throughput(w));
            }
            return 0;
        }
    }

    @Command(name = "placement", mixinStandardHelpOptions = true, description = "Which workers hold which experts (replicas, primary first).")
    static final class PlacementCmd extends Base {
        @Override
        public Integer call() throws Exception {
            PlacementInfo info = call(stub -> stub.getPlacement(GetPlacementRequest.getDefaultInstance()));
            if (json) {
                out.println(info.getJson());
                return 0;
            }
            ExpertPlacement p = ExpertPlacement.fromJson(info.getJson());
            // the placement names workers by address; operators know them by id (moe admin workers, drain)
            Map<String, String> names = new HashMap<>();
            call(stub -> stub.listWorkers(ListWorkersRequest.getDefaultInstance())).getWorkersList()
                    .forEach(w -> names.put(w.getAddress(), w.getId()));
            List<String> labels = p.workers().stream().map(a -> names.getOrDefault(a, a)).toList();
            out.printf("placement epoch %d over %d workers%n", p.epoch(), p.workers().size());
            for (int i = 0; i < p.workers().size(); i++) {
                out.printf("  %-12s %s%n", labels.get(i), p.workers().get(i));
            }
            p.layers().forEach((layer, experts) -> {
                StringBuilder row = new StringBuilder(String.format("layer %-4d", layer));
                for (int e = 0; e < experts.length; e++) {
                    row.append(String.format(" e%d:", e));
                    for (int r = 0; r < experts[e].length; r++) {
                        row.append(r == 0 ? "" : ",").append(labels.get(experts[e][r]));
                    }
                }
                out.println(row);
            });
            return 0;
        }
    }

    @Command(name = "load", mixinStandardHelpOptions = true, description = "Tokens routed per expert over the coordinator's load window.")
    static final class LoadCmd extends Base {
        @Override
        public Integer call() throws Exception {
            LoadInfo load = call(stub -> stub.getLoad(GetLoadRequest.getDefaultInstance()));
            if (json) {
                printJson(load);
                return 0;
            }
            if (load.getWorkersCount() > 0) {
                out.printf("compute time per worker, last %d s (rows of its copies / its rows/s)%n", load.getWindowSeconds());
                out.printf("  %-21s %12s %12s %10s %10s%n", "worker", "rows", "rows/s", "seconds", "time share");
                for (WorkerTime w : load.getWorkersList()) {
                    out.printf(java.util.Locale.ROOT, "  %-21s %12.0f %12s %10s %10s%n", w.getAddress(), w.getRows(),
                            w.getRowsPerS() > 0 ? String.format(java.util.Locale.ROOT, "%.0f", w.getRowsPerS()) : "unknown",
                            w.getRowsPerS() > 0 ? String.format(java.util.Locale.ROOT, "%.3f", w.getSeconds()) : "-",
                            w.getRowsPerS() > 0 ? String.format(java.util.Locale.ROOT, "%.1f %%", 100 * w.getTimeShare()) : "-");
                }
                double busiest = load.getWorkersList().stream().mapToDouble(WorkerTime::getSeconds).max().orElse(0);
                if (load.getIdealSeconds() > 0) {
                    out.printf(java.util.Locale.ROOT, "  busiest worker %.3f s, ideal %.3f s (total rows / total speed): %.2f× the ideal%n",
                            busiest, load.getIdealSeconds(), busiest / load.getIdealSeconds());
                }
            }
            out.printf("tokens routed per expert, last %d s%n", load.getWindowSeconds());
            for (LayerLoad l : load.getLayersList()) {
                StringBuilder row = new StringBuilder(String.format("layer %-4d", l.getLayer()));
                long max = 0;
                long sum = 0;
                for (long t : l.getTokensList()) {
                    row.append(String.format(" %8d", t));
                    max = Math.max(max, t);
                    sum += t;
                }
                double mean = l.getTokensCount() == 0 ? 0 : sum / (double) l.getTokensCount();
                row.append(String.format("   max/mean %.2f", mean == 0 ? 0 : max / mean));
                out.println(row);
            }
            return 0;
        }
    }

    /** "12000 (900 at 4, 20000 at 256, live 15000)", "5000 (given)" or "unknown". */
    static String throughput(WorkerInfo w) {
        if (w.getPlanningRowsPerS() <= 0) {
            return "unknown";
        }
        if (w.getThroughputFixed()) {
            return String.format(java.util.Locale.ROOT, "%.0f (given)", w.getPlanningRowsPerS());
        }
        return String.format(java.util.Locale.ROOT, "%.0f (%.0f at %d, %.0f at %d, live %s)", w.getPlanningRowsPerS(),
                w.getSmallBatchRowsPerS(), w.getSmallBatchRows(), w.getLargeBatchRowsPerS(), w.getLargeBatchRows(),
                w.getLiveRowsPerS() > 0 ? String.format(java.util.Locale.ROOT, "%.0f", w.getLiveRowsPerS()) : "-");
    }

    /** A worker's throughput for a log line: "12000 rows/s at 4 rows, 20000 at 256" or "throughput given: 5000 rows/s". */
    static String describe(dev.moecluster.control.WorkerThroughput t) {
        if (t.fixed()) {
            return String.format(java.util.Locale.ROOT, "throughput given: %.0f rows/s", t.planningRowsPerSecond());
        }
        if (t.planningRowsPerSecond() <= 0) {
            return "throughput not reported";
        }
        return String.format(java.util.Locale.ROOT, "measured %.0f rows/s at %d rows, %.0f at %d", t.smallBatchRowsPerSecond(),
                t.smallBatchRows(), t.largeBatchRowsPerSecond(), t.largeBatchRows());
    }

    @Command(name = "drain", mixinStandardHelpOptions = true, description = "Move every expert off a worker; it reports DRAINED when it can stop.")
    static final class DrainCmd extends Base {
        @Parameters(paramLabel = "WORKER", description = "Worker id or address (see moe admin workers).")
        String worker;

        @Override
        public Integer call() throws Exception {
            out.println(call(stub -> stub.drain(DrainRequest.newBuilder().setWorker(worker).build())).getMessage());
            return 0;
        }
    }

    @Command(name = "undrain", mixinStandardHelpOptions = true,
            description = "Take a DRAINING or DRAINED worker back: ACTIVE again, it gets experts at the next rebalance (requested at once).")
    static final class UndrainCmd extends Base {
        @Parameters(paramLabel = "WORKER", description = "Worker id or address (see moe admin workers).")
        String worker;

        @Override
        public Integer call() throws Exception {
            out.println(call(stub -> stub.undrain(UndrainRequest.newBuilder().setWorker(worker).build())).getMessage());
            return 0;
        }
    }

    @Command(name = "rebalance", mixinStandardHelpOptions = true, description = "Plan from the current load now and roll out if it helps.")
    static final class RebalanceCmd extends Base {
        @Override
        public Integer call() throws Exception {
            out.println(call(stub -> stub.rebalance(RebalanceRequest.getDefaultInstance())).getMessage());
            return 0;
        }
    }
}
