package dev.moecluster.bench.jmh;

import dev.moecluster.bench.nativekernel.NativeGemm;
import dev.moecluster.core.kernel.Gemm;
import dev.moecluster.core.moe.ExpertWeights;
import dev.moecluster.core.tensor.DType;
import java.lang.foreign.Arena;
import java.lang.management.ManagementFactory;
import java.lang.management.ThreadMXBean;
import java.nio.file.Files;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * A single-core A/B of the expert-FFN kernels timed by <em>thread CPU time</em>, interleaved round by
 * round, for a shared machine where wall-clock JMH scores swing with other people's builds: descheduled
 * time does not count, and drift hits every kernel in a round alike. Complements, not replaces, the JMH
 * {@link SingleThreadFfnBenchmark}. Run with {@code -XX:ActiveProcessorCount=1} and one dtype per JVM:
 * {@code CpuTimeKernelComparison BF16 [rows,…] [rounds]}.
 */
public final class CpuTimeKernelComparison {
    private static final ThreadMXBean THREADS = ManagementFactory.getThreadMXBean();

    private CpuTimeKernelComparison() {}

    public static void main(String[] args) {
        if (Gemm.parallelism() != 1) {
            throw new IllegalStateException("run with -XX:ActiveProcessorCount=1 so every kernel stays on this thread");
        }
        DType dtype = DType.valueOf(args.length > 0 ? args[0].toUpperCase(Locale.ROOT) : "BF16");
        int[] rowCounts = Arrays.stream((args.length > 1 ? args[1] : "1,16,256").split(",")).mapToInt(Integer::parseInt).toArray();
        int rounds = args.length > 2 ? Integer.parseInt(args[2]) : 9;
        try (Arena arena = Arena.ofShared()) {
            ExpertWeights expert = ExpertFixture.expert(arena, dtype);
            Map<String, FfnKernel> kernels = new LinkedHashMap<>();
            List<String> names = new ArrayList<>(List.of("vector"));
            if (Files.isReadable(NativeGemm.libraryPath())) {
                names.addAll(List.of("native", "native-4x3"));
            } else {
                System.out.println("(no " + NativeGemm.libraryPath() + ": native kernel skipped)");
            }
            for (String name : names) {
                kernels.put(name, FfnKernel.of(name, expert));
            }
            System.out.printf(Locale.ROOT, "dtype %s, thread CPU time, %d rounds; GFLOP/s median [min, max]; ratio = paired"
                    + " per-round median vs vector%n", dtype, rounds);
            for (int rows : rowCounts) {
                compare(kernels, rows, rounds);
            }
        }
    }

    private static void compare(Map<String, FfnKernel> kernels, int rows, int rounds) {
        float[] x = ExpertFixture.activations(rows);
        float[] out = new float[rows * ExpertFixture.HIDDEN];
        double flops = ExpertFixture.flops(rows);
        Map<String, List<Double>> rates = new LinkedHashMap<>();
        float[] expected = new float[out.length];
        kernels.get("vector").forward(x, rows, expected);
        for (Map.Entry<String, FfnKernel> e : kernels.entrySet()) {
            e.getValue().forward(x, rows, out);
            KernelChecks.requireClose(e.getKey() + " FFN", expected, out);
            sample(e.getValue(), x, rows, out, 3_000_000_000L); // JIT warm-up
            rates.put(e.getKey(), new ArrayList<>());
        }
        List<String> names = new ArrayList<>(kernels.keySet());
        for (int round = 0; round < rounds; round++) {
            for (int j = 0; j < names.size(); j++) {
                String name = names.get((round + j) % names.size()); // rotate the order every round
                rates.get(name).add(flops / sample(kernels.get(name), x, rows, out, 700_000_000L) / 1e9);
            }
        }
        List<Double> base = rates.get("vector");
        for (Map.Entry<String, List<Double>> e : rates.entrySet()) {
            double[] v = e.getValue().stream().mapToDouble(Double::doubleValue).sorted().toArray();
            double[] ratio = new double[v.length];
            for (int i = 0; i < ratio.length; i++) {
                ratio[i] = e.getValue().get(i) / base.get(i);
            }
            Arrays.sort(ratio);
            System.out.printf(Locale.ROOT, "rows %4d  %-11s %7.2f GFLOP/s [%6.2f, %6.2f]   x%.3f [%.3f, %.3f]%n",
                    rows, e.getKey(), median(v), v[0], v[v.length - 1], median(ratio), ratio[0], ratio[ratio.length - 1]);
        }
    }

    /** Seconds of this thread's CPU time per FFN, over at least {@code minCpuNanos}. */
    private static double sample(FfnKernel ffn, float[] x, int rows, float[] out, long minCpuNanos) {
        long start = THREADS.getCurrentThreadCpuTime();
        long calls = 0;
        long elapsed;
        do {
            ffn.forward(x, rows, out);
            calls++;
            elapsed = THREADS.getCurrentThreadCpuTime() - start;
        } while (elapsed < minCpuNanos);
        return elapsed / 1e9 / calls;
    }

    private static double median(double[] sorted) {
        int n = sorted.length;
        return n % 2 == 1 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
    }
}
