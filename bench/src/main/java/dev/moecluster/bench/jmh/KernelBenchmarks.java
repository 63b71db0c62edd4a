package dev.moecluster.bench.jmh;

import java.io.PrintStream;
import java.util.ArrayList;
import java.util.Collection;
import java.util.Comparator;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import org.openjdk.jmh.results.RunResult;
import org.openjdk.jmh.runner.Runner;
import org.openjdk.jmh.runner.RunnerException;
import org.openjdk.jmh.runner.options.ChainedOptionsBuilder;
import org.openjdk.jmh.runner.options.OptionsBuilder;
import org.openjdk.jmh.runner.options.TimeValue;

/**
 * Runs the expert-FFN JMH benchmarks in forked JVMs and prints GFLOP/s (FFNs per second × 6·rows·H·I)
 * with JMH's 99.9% confidence half-width. Usage:
 * {@code KernelBenchmarks [ffn|single-thread]… [--forks N] [--warmup N] [--iterations N]
 * [--time SECONDS] [--rows 1,16,256] [--dtype BF16,F32,FP8_E4M3] [--cpus N] [--json FILE]}. The host JVM needs
 * {@code --add-modules jdk.incubator.vector}; the forks get their flags from the benchmarks' {@code @Fork}.
 */
public final class KernelBenchmarks {
    private static final Map<String, String> GROUPS = Map.of(
            "ffn", ExpertFfnBenchmark.class.getName(),
            "single-thread", SingleThreadFfnBenchmark.class.getName());

    private KernelBenchmarks() {}

    public static void main(String[] args) throws RunnerException {
        List<String> groups = new ArrayList<>();
        int forks = 2;
        int warmup = 3;
        int iterations = 5;
        double seconds = 2;
        String rows = null;
        String dtype = null;
        String json = null;
        Integer cpus = null;
        for (int i = 0; i < args.length; i++) {
            switch (args[i]) {
                case "--forks" -> forks = Integer.parseInt(args[++i]);
                case "--warmup" -> warmup = Integer.parseInt(args[++i]);
                case "--iterations" -> iterations = Integer.parseInt(args[++i]);
                case "--time" -> seconds = Double.parseDouble(args[++i]);
                case "--rows" -> rows = args[++i];
                case "--dtype" -> dtype = args[++i];
                case "--json" -> json = args[++i];
                case "--cpus" -> cpus = Integer.parseInt(args[++i]);
                case "-h", "--help" -> {
                    usage(System.out);
                    return;
                }
                default -> {
                    if (!GROUPS.containsKey(args[i])) {
                        usage(System.err);
                        throw new IllegalArgumentException("unknown argument " + args[i]);
                    }
                    groups.add(args[i]);
                }
            }
        }
        if (groups.isEmpty()) {
            groups.add("ffn");
        }
        TimeValue time = TimeValue.milliseconds(Math.round(seconds * 1000));
        ChainedOptionsBuilder options = new OptionsBuilder()
                .forks(forks)
                .warmupIterations(warmup)
                .warmupTime(time)
                .measurementIterations(iterations)
                .measurementTime(time)
                .shouldFailOnError(true); // the @Fork annotations carry the JVM flags
        for (String group : groups) {
            options.include("^" + GROUPS.get(group).replace(".", "\\.") + "\\.");
        }
        if (rows != null) {
            options.param("rows", rows.split(","));
        }
        if (dtype != null) {
            options.param("dtype", dtype.toUpperCase(Locale.ROOT).split(","));
        }
        if (cpus != null) {
            // Replaces the benchmarks' own jvmArgsAppend; single-thread already pins one CPU.
            options.jvmArgsAppend("-XX:ActiveProcessorCount=" + cpus);
        }
        if (json != null) {
            options.resultFormat(org.openjdk.jmh.results.format.ResultFormatType.JSON).result(json);
        }
        printTable(new Runner(options.build()).run(), System.out);
    }

    private static void usage(PrintStream out) {
        out.println("usage: KernelBenchmarks [ffn|single-thread]... [--forks N] [--warmup N]"
                + " [--iterations N] [--time SECONDS] [--rows 1,16,256] [--dtype BF16,F32,FP8_E4M3] [--cpus N] [--json FILE]");
    }

    /** One line per benchmark and parameter set: FFNs/s and GFLOP/s, each ± the 99.9% CI half-width. */
    static void printTable(Collection<RunResult> results, PrintStream out) {
        List<RunResult> sorted = new ArrayList<>(results);
        sorted.sort(Comparator.comparing((RunResult r) -> r.getParams().getBenchmark())
                .thenComparing(r -> param(r, "kernel"))
                .thenComparing(r -> param(r, "dtype"))
                .thenComparingInt(r -> Integer.parseInt(param(r, "rows"))));
        out.println();
        out.println("Expert FFN, H=" + ExpertFixture.HIDDEN + " I=" + ExpertFixture.INTERMEDIATE
                + ", GFLOP/s = FFN/s x 6*rows*H*I / 1e9, error = JMH 99.9% CI half-width");
        out.printf(Locale.ROOT, "%-26s %-10s %-5s %5s %14s %18s %10s%n",
                "benchmark", "kernel", "dtype", "rows", "FFN/s", "GFLOP/s", "ms/FFN");
        for (RunResult r : sorted) {
            int rowCount = Integer.parseInt(param(r, "rows"));
            double score = r.getPrimaryResult().getScore();
            double error = r.getPrimaryResult().getScoreError();
            double gflop = ExpertFixture.flops(rowCount) / 1e9;
            String name = r.getParams().getBenchmark();
            name = name.substring(name.lastIndexOf('.', name.lastIndexOf('.') - 1) + 1);
            out.printf(Locale.ROOT, "%-26s %-10s %-5s %5d %8.2f ±%5.2f %9.2f ±%6.2f %10.2f%n",
                    name, param(r, "kernel"), param(r, "dtype"), rowCount, score, error,
                    score * gflop, error * gflop, 1000 / score);
        }
    }

    private static String param(RunResult r, String name) {
        String v = r.getParams().getParam(name);
        return v == null ? "-" : v;
    }
}
