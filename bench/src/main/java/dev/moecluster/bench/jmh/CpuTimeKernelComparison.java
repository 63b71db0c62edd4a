package dev.moecluster.bench.jmh;

import dev.moecluster.core.kernel.Gemm;
import dev.moecluster.core.kernel.NativeGemm;
import dev.moecluster.core.moe.ExpertWeights;
import dev.moecluster.core.tensor.DType;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.management.ManagementFactory;
import java.lang.management.ThreadMXBean;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorOperators;

/**
 * A single-core A/B of the expert-FFN kernels timed by <em>thread CPU time</em>, interleaved round by
 * round, for a shared machine where wall-clock JMH scores swing with other people's builds: descheduled
 * time does not count, and drift hits every kernel in a round alike. Complements, not replaces, the JMH
 * {@link SingleThreadFfnBenchmark}. Run with {@code -XX:ActiveProcessorCount=1} and one dtype per JVM:
 * {@code CpuTimeKernelComparison BF16 [rows,…] [rounds] [cpu|wall]}; {@code wall} times by wall clock
 * on all of Gemm's threads instead. Each run first measures memory bandwidth the same way (a STREAM-like
 * copy and a read-only sum over buffers far larger than the caches), so decode-shaped rows can be put
 * against it: at 1 row an FFN streams its weights once.
 */
public final class CpuTimeKernelComparison {
    private static final ThreadMXBean THREADS = ManagementFactory.getThreadMXBean();

    private CpuTimeKernelComparison() {}

    /** Wall clock across all threads instead of this thread's CPU time. */
    private static boolean wall;

    public static void main(String[] args) {
        DType dtype = DType.valueOf(args.length > 0 ? args[0].toUpperCase(Locale.ROOT) : "BF16");
        int[] rowCounts = Arrays.stream((args.length > 1 ? args[1] : "1,16,256").split(",")).mapToInt(Integer::parseInt).toArray();
        int rounds = args.length > 2 ? Integer.parseInt(args[2]) : 9;
        wall = args.length > 3 && args[3].equals("wall");
        if (!wall && Gemm.parallelism() != 1) {
            throw new IllegalStateException("run with -XX:ActiveProcessorCount=1 so every kernel stays on this thread");
        }
        try (Arena arena = Arena.ofShared()) {
            System.out.printf(Locale.ROOT, "%s, %d threads; load average %s%n", wall ? "wall clock" : "thread CPU time",
                    Gemm.parallelism(), loadAverage());
            Bandwidth bw = Bandwidth.measure(wall ? Gemm.parallelism() : 1);
            System.out.printf(Locale.ROOT, "memory bandwidth, %d thread(s), 512 MiB buffers, best of 5: copy %.2f GB/s (read +"
                    + " write, STREAM convention), read-only sum %.2f GB/s%n", bw.threads(), bw.copyGbPerS(), bw.readGbPerS());
            ExpertWeights expert = ExpertFixture.expert(arena, dtype);
            Map<String, FfnKernel> kernels = new LinkedHashMap<>();
            List<String> names = new ArrayList<>(List.of("vector", "vector-s2i"));
            NativeGemm.Availability nat = NativeGemm.probe();
            if (nat.gemm().isPresent()) {
                names.add("native");
            } else {
                System.out.println("(native kernel skipped: " + nat.description() + ")");
            }
            for (String name : names) {
                kernels.put(name, FfnKernel.of(name, expert));
            }
            System.out.printf(Locale.ROOT, "dtype %s, %s, %d rounds; GFLOP/s median [min, max]; ratio = paired"
                    + " per-round median vs vector; weights %.1f MB per FFN%n", dtype, wall ? "wall clock" : "thread CPU time",
                    rounds, expert.byteSize() / 1e6);
            for (int rows : rowCounts) {
                compare(kernels, rows, rounds, expert.byteSize(), bw);
            }
            System.out.printf(Locale.ROOT, "load average at the end %s%n", loadAverage());
        }
    }

    private static String loadAverage() {
        try {
            return Files.readString(java.nio.file.Path.of("/proc/loadavg")).strip();
        } catch (java.io.IOException e) {
            return "unknown";
        }
    }

    private static void compare(Map<String, FfnKernel> kernels, int rows, int rounds, long weightBytes, Bandwidth bw) {
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
            // Weights streamed per second, if each FFN reads them once: the memory-bound measure at few rows.
            double weightGbPerS = median(v) * 1e9 / flops * weightBytes / 1e9;
            System.out.printf(Locale.ROOT, "rows %4d  %-11s %7.2f GFLOP/s [%6.2f, %6.2f]   x%.3f [%.3f, %.3f]   weights %6.2f GB/s"
                    + " = %.2f of read bandwidth%n", rows, e.getKey(), median(v), v[0], v[v.length - 1], median(ratio), ratio[0],
                    ratio[ratio.length - 1], weightGbPerS, weightGbPerS / bw.readGbPerS());
        }
    }

    /** Seconds of this thread's CPU time (or wall time) per FFN, over at least {@code minNanos}. */
    private static double sample(FfnKernel ffn, float[] x, int rows, float[] out, long minNanos) {
        long start = now();
        long calls = 0;
        long elapsed;
        do {
            ffn.forward(x, rows, out);
            calls++;
            elapsed = now() - start;
        } while (elapsed < minNanos);
        return elapsed / 1e9 / calls;
    }

    private static long now() {
        return wall ? System.nanoTime() : THREADS.getCurrentThreadCpuTime();
    }

    /** STREAM-like bandwidth on {@code threads} threads, each over its own slice of two 512 MiB buffers. */
    record Bandwidth(int threads, double copyGbPerS, double readGbPerS) {
        static Bandwidth measure(int threads) {
            long bytes = 512L << 20;
            try (Arena arena = Arena.ofShared()) {
                MemorySegment src = arena.allocate(bytes, 64);
                MemorySegment dst = arena.allocate(bytes, 64);
                src.fill((byte) 1);
                dst.fill((byte) 2);
                // Compile sum() fully before timing it: one call over 512 MiB would run as OSR code.
                for (int i = 0; i < 20_000; i++) {
                    sink += sum(src, 0, 1 << 16);
                }
                double copy = 0;
                double read = 0;
                for (int rep = 0; rep < 5; rep++) {
                    copy = Math.max(copy, 2.0 * bytes / run(threads, bytes, (from, to) -> MemorySegment.copy(src, from, dst, from, to - from)));
                    read = Math.max(read, bytes / run(threads, bytes, (from, to) -> sink += sum(src, from, to)));
                }
                return new Bandwidth(threads, copy / 1e9, read / 1e9);
            }
        }

        private static volatile float sink;

        /** Seconds (this thread's CPU time with one thread, else wall time) to run {@code part} over {@code threads} slices. */
        private static double run(int threads, long bytes, java.util.function.BiConsumer<Long, Long> part) {
            long slice = bytes / threads / 64 * 64;
            if (threads == 1) {
                long start = THREADS.getCurrentThreadCpuTime();
                part.accept(0L, bytes);
                return (THREADS.getCurrentThreadCpuTime() - start) / 1e9;
            }
            long start = System.nanoTime();
            List<Thread> ts = new ArrayList<>();
            for (int t = 0; t < threads; t++) {
                long from = t * slice;
                long to = t == threads - 1 ? bytes : from + slice;
                ts.add(Thread.ofPlatform().start(() -> part.accept(from, to)));
            }
            for (Thread t : ts) {
                try {
                    t.join();
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                    throw new IllegalStateException(e);
                }
            }
            return (System.nanoTime() - start) / 1e9;
        }

        /** Reads {@code [from, to)} as floats into 4 independent accumulators, so the adds do not bound it, the loads do. */
        private static float sum(MemorySegment s, long from, long to) {
            var sp = FloatVector.SPECIES_PREFERRED;
            long step = sp.vectorByteSize();
            FloatVector a0 = FloatVector.zero(sp), a1 = FloatVector.zero(sp), a2 = FloatVector.zero(sp), a3 = FloatVector.zero(sp);
            long i = from;
            for (; i + 4 * step <= to; i += 4 * step) {
                a0 = a0.add(FloatVector.fromMemorySegment(sp, s, i, ByteOrder.LITTLE_ENDIAN));
                a1 = a1.add(FloatVector.fromMemorySegment(sp, s, i + step, ByteOrder.LITTLE_ENDIAN));
                a2 = a2.add(FloatVector.fromMemorySegment(sp, s, i + 2 * step, ByteOrder.LITTLE_ENDIAN));
                a3 = a3.add(FloatVector.fromMemorySegment(sp, s, i + 3 * step, ByteOrder.LITTLE_ENDIAN));
            }
            return a0.add(a1).add(a2).add(a3).reduceLanes(VectorOperators.ADD);
        }
    }

    private static double median(double[] sorted) {
        int n = sorted.length;
        return n % 2 == 1 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
    }
}
