package dev.moecluster.cli;

import dev.moecluster.bench.MoeForwardLoad;
import dev.moecluster.router.DispatchStats;
import dev.moecluster.worker.ExpertWorker;
import java.io.PrintStream;
import java.util.Map;

/** Prints the tables {@code moe demo} and {@code moe bench} show: expert load, workers, wire bytes. */
final class ClusterReport {
    private ClusterReport() {}

    static void expertLoad(PrintStream out, DispatchStats stats, int experts) {
        out.println("Expert load (routed token rows per expert):");
        StringBuilder head = new StringBuilder(String.format("  %-6s", "layer"));
        for (int e = 0; e < experts; e++) {
            head.append(String.format(" %7s", "e" + e));
        }
        head.append(String.format(" %9s", "max/mean"));
        out.println(head);
        for (Map.Entry<Integer, Map<Integer, Long>> layer : stats.rowsByLayerAndExpert().entrySet()) {
            StringBuilder row = new StringBuilder(String.format("  %-6d", layer.getKey()));
            long max = 0;
            long sum = 0;
            for (int e = 0; e < experts; e++) {
                long v = layer.getValue().getOrDefault(e, 0L);
                row.append(String.format(" %7d", v));
                max = Math.max(max, v);
                sum += v;
            }
            row.append(String.format(" %9.2f", sum == 0 ? 0 : max / (sum / (double) experts)));
            out.println(row);
        }
    }

    static void workers(PrintStream out, Iterable<ExpertWorker> workers) {
        out.println("Workers:");
        out.printf("  %-10s %-17s %9s %12s %12s %10s%n", "worker", "address", "batches", "expert calls", "rows", "rows/call");
        for (ExpertWorker w : workers) {
            long calls = w.backendCalls();
            out.printf("  %-10s %-17s %9d %12d %12d %10.1f%n", w.workerId(), w.address(), w.batchesServed(), calls,
                    w.rowsComputed(), calls == 0 ? 0.0 : w.rowsComputed() / (double) calls);
        }
    }

    static void wire(PrintStream out, DispatchStats stats, int hidden, String dtype, int dtypeBytes) {
        long rows = Math.max(1, stats.rows());
        double sent = stats.bytesSent() / (double) rows;
        double received = stats.bytesReceived() / (double) rows;
        out.printf("Wire: %.0f bytes per routed token (%.0f out + %.0f back); payload floor %d x %s = %d bytes each way; "
                        + "%d batches, %d failovers%n",
                sent + received, sent, received, hidden, dtype, hidden * dtypeBytes, stats.batches(), stats.failovers());
    }

    static String throughput(String label, MoeForwardLoad.Report r) {
        return String.format("%-11s %6d calls x %4d tokens: %,10.0f tokens/s   p50 %8.2f ms   p99 %8.2f ms", label,
                r.requests(), r.tokens() / r.requests(), r.tokensPerSecond(), r.p50Micros() / 1000.0, r.p99Micros() / 1000.0);
    }
}
