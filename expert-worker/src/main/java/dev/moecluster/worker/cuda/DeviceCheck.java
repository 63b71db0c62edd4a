package dev.moecluster.worker.cuda;

import static jcuda.driver.JCudaDriver.cuEventCreate;
import static jcuda.driver.JCudaDriver.cuEventDestroy;
import static jcuda.driver.JCudaDriver.cuEventElapsedTime;
import static jcuda.driver.JCudaDriver.cuEventRecord;
import static jcuda.driver.JCudaDriver.cuEventSynchronize;
import static jcuda.driver.JCudaDriver.cuMemcpyDtoH;
import static jcuda.driver.JCudaDriver.cuMemcpyHtoD;
import static jcuda.driver.JCudaDriver.cuMemsetD32Async;
import static jcuda.driver.JCudaDriver.cuStreamCreate;
import static jcuda.driver.JCudaDriver.cuStreamDestroy;
import static jcuda.driver.JCudaDriver.cuStreamSynchronize;

import dev.moecluster.control.wire.HostAllocator;
import dev.moecluster.core.moe.ChannelScales;
import dev.moecluster.core.moe.ExpertWeights;
import dev.moecluster.core.tensor.DType;
import dev.moecluster.core.tensor.Numerics;
import dev.moecluster.core.tensor.RowBatch;
import dev.moecluster.core.tensor.Tensor;
import dev.moecluster.worker.CpuBackend;
import dev.moecluster.worker.Round;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.stream.IntStream;
import jcuda.Pointer;
import jcuda.driver.CUevent;
import jcuda.driver.CUevent_flags;
import jcuda.driver.CUstream;
import jcuda.driver.CUstream_flags;

/**
 * The GPU machine's check of the cuda backend (run by {@code bench/gpu/check.sh}): (a) the cuda
 * backend against the cpu backend on random inputs, outputs poisoned with NaN first, with every tile
 * the device loaded (on compute capability 9.0 the Hopper wgmma/TMA tiles as well as the mma.sync
 * ones); (b) expert-FFN TFLOP/s of every loaded tile for 8 experts at Llama 4 Scout's shape, beside
 * {@code torch.matmul}'s (bf16) and {@code torch._scaled_mm}'s (fp8) figures from
 * {@code bench/gpu/torch_ffn.py}; the end-to-end rate through {@link CudaBackend#computeGroup},
 * transfers included. FP8 experts (e4m3 codes with per-channel scales, as an FP8 checkpoint holds them)
 * are checked in (a) on every mma.sync tile, with an expert of subnormal codes only and a round mixing
 * bf16 and FP8 experts, and timed in (b) through the backend. The last lines printed are the summary.
 *
 * <p>Usage: {@code DeviceCheck [--torch FILE] [--reps N] [--only a|b]}. Exit status 0 when every
 * correctness case passes, 1 when one fails, 2 when no usable GPU is found.
 */
public final class DeviceCheck {
    private static final ValueLayout.OfShort SHORT_LE = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final double TOLERANCE = 1e-2;
    private static final int BENCH_EXPERTS = 8;
    private static final int BENCH_HIDDEN = 5120;
    private static final int BENCH_INTERMEDIATE = 8192;
    private static final int[] BENCH_ROWS = {16, 256, 2048};

    private final List<String> failures = new ArrayList<>();
    private final int reps;
    private final Map<String, double[]> torch;
    /** Median milliseconds of our two launches, by "rows TILE". */
    private final Map<String, Double> ourKernels = new LinkedHashMap<>();
    /** End-to-end TFLOP/s, one batch at a time / two in flight, by rows per expert. */
    private final Map<Integer, String> endToEnd = new LinkedHashMap<>();
    /** FP8 experts through the backend: median kernel and end-to-end milliseconds, by rows per expert. */
    private final Map<Integer, double[]> fp8 = new LinkedHashMap<>();
    /** Whether the Hopper tiles were loaded: which tile "auto" means in the summary. */
    private boolean hopper;

    DeviceCheck(int reps, Map<String, double[]> torch) {
        this.reps = reps;
        this.torch = torch;
    }

    public static void main(String[] args) throws Exception {
        Path torchFile = null;
        int reps = 20;
        String only = "ab";
        for (int i = 0; i < args.length; i++) {
            switch (args[i]) {
                case "--torch" -> torchFile = Path.of(args[++i]);
                case "--reps" -> reps = Integer.parseInt(args[++i]);
                case "--only" -> only = args[++i];
                default -> {
                    System.err.println("usage: DeviceCheck [--torch FILE] [--reps N] [--only a|b]");
                    System.exit(2);
                }
            }
        }
        CudaAvailability cuda = CudaAvailability.probe();
        System.out.println("device: " + cuda.description());
        if (!cuda.usable()) {
            System.out.println("RESULT: no usable GPU, nothing checked");
            System.exit(2);
        }
        DeviceCheck check = new DeviceCheck(reps, readTorch(torchFile));
        CudaBackend opened;
        try {
            opened = CudaBackend.open();
        } catch (RuntimeException e) {
            System.out.println("RESULT: FAIL: the cuda backend did not open: " + e.getMessage());
            System.exit(1);
            return;
        }
        try (CudaBackend backend = opened) {
            System.out.printf(Locale.ROOT, "kernels: PTX loaded (driver JIT) in %.0f ms%n", backend.kernels().loadNanos() / 1e6);
            backend.kernels().resourceReport().forEach(l -> System.out.println("  " + l));
            check.hopper(backend.kernels().hopper());
            System.out.println("kernels: " + (check.hopper ? "Hopper sm_90a (wgmma, TMA) and mma.sync" : "mma.sync only (not compute capability 9.0)")
                    + "; tiles " + backend.kernels().tiles().stream().map(TileConfig::suffix).toList());
            if (only.contains("a")) {
                check.correctness(backend);
            }
            if (only.contains("b")) {
                check.kernelThroughput(backend);
                check.endToEnd(backend);
                check.fp8Throughput(backend);
            }
        }
        check.printSummary(cuda.description());
        System.exit(check.failures.isEmpty() ? 0 : 1);
    }

    // ---- (a) correctness ----

    private void correctness(CudaBackend backend) {
        System.out.println();
        System.out.println("== (a) correctness: cuda vs cpu backend, relative error ||cuda - cpu|| / ||cpu||, limit " + TOLERANCE + " ==");
        backend.poisonOutputs(true);
        try (Arena arena = Arena.ofShared()) {
            SplittableRandom seeds = new SplittableRandom(20261127);
            List<ExpertWeights> small = experts(arena, 6, 512, 1024, seeds.nextLong());
            small.forEach(backend::load); // weights go up at load, as a worker loads its experts
            int[] mixed = {1, 5, 64, 65, 130, 300};
            List<TileConfig> tiles = new ArrayList<>();
            tiles.add(null); // the backend's own choice
            tiles.addAll(backend.kernels().tiles());
            for (TileConfig tile : tiles) {
                group(backend, "H512 I1024 mixed rows", small, mixed, tile, seeds.nextLong());
            }
            List<ExpertWeights> odd = experts(arena, 3, 136, 200, seeds.nextLong());
            odd.forEach(backend::load);
            for (TileConfig tile : backend.kernels().tiles()) {
                group(backend, "H136 I200 partial tiles", odd, new int[] {3, 0, 129}, tile, seeds.nextLong());
            }
            single(backend, small.get(2), 77, seeds.nextLong());
            pipelined(backend, small, seeds.nextLong());
            pinnedRound(backend, small, seeds.nextLong());

            // FP8 experts: codes widened to bf16 in the mma.sync kernels' tile loader, scales in the epilogue.
            List<ExpertWeights> smallFp8 = fp8Experts(arena, 6, 512, 1024, seeds.nextLong(), false);
            smallFp8.forEach(backend::load);
            List<TileConfig> fp8Tiles = new ArrayList<>();
            fp8Tiles.add(null);
            fp8Tiles.addAll(TileConfig.of(false));
            for (TileConfig tile : fp8Tiles) {
                group(backend, "FP8 H512 I1024 mixed rows", smallFp8, mixed, tile, seeds.nextLong());
            }
            List<ExpertWeights> oddFp8 = fp8Experts(arena, 3, 136, 200, seeds.nextLong(), false);
            oddFp8.forEach(backend::load);
            for (TileConfig tile : TileConfig.of(false)) {
                group(backend, "FP8 H136 I200 partial tiles, rows padded", oddFp8, new int[] {3, 0, 129}, tile, seeds.nextLong());
            }
            List<ExpertWeights> subnormal = fp8Experts(arena, 1, 512, 1024, seeds.nextLong(), true);
            backend.load(subnormal.getFirst());
            group(backend, "FP8 subnormal codes only", subnormal, new int[] {40}, null, seeds.nextLong());
            group(backend, "bf16 and FP8 experts in one round", List.of(small.get(0), smallFp8.get(1), small.get(2),
                    smallFp8.get(3)), new int[] {5, 70, 0, 130}, null, seeds.nextLong());

            memoryAccounting(backend, small.get(0));
            memoryAccounting(backend, smallFp8.get(0));
            for (List<ExpertWeights> loaded : List.of(small, odd, smallFp8, oddFp8, subnormal)) {
                for (ExpertWeights w : loaded) {
                    backend.unload(w);
                }
            }

            List<ExpertWeights> scout = experts(arena, 2, BENCH_HIDDEN, BENCH_INTERMEDIATE, seeds.nextLong());
            scout.forEach(backend::load);
            group(backend, "H5120 I8192 (Scout)", scout, new int[] {16, 200}, null, seeds.nextLong());
            group(backend, "H5120 I8192 (Scout)", scout, new int[] {16, 200}, TileConfig.SMALL, seeds.nextLong());
            if (backend.kernels().hopper()) {
                for (TileConfig tile : TileConfig.of(true)) {
                    group(backend, "H5120 I8192 (Scout)", scout, new int[] {16, 200}, tile, seeds.nextLong());
                }
            }
            for (ExpertWeights w : scout) {
                backend.unload(w);
            }
            List<ExpertWeights> scoutFp8 = fp8Experts(arena, 2, BENCH_HIDDEN, BENCH_INTERMEDIATE, seeds.nextLong(), false);
            scoutFp8.forEach(backend::load);
            group(backend, "FP8 H5120 I8192 (Scout)", scoutFp8, new int[] {16, 200}, null, seeds.nextLong());
            for (ExpertWeights w : scoutFp8) {
                backend.unload(w);
            }
        } catch (RuntimeException e) {
            fail("correctness section stopped: " + e);
            e.printStackTrace(System.out);
        } finally {
            backend.poisonOutputs(false);
            backend.forceTile(null);
        }
    }

    private void group(CudaBackend backend, String name, List<ExpertWeights> experts, int[] rows, TileConfig tile, long seed) {
        backend.forceTile(tile);
        int hidden = experts.getFirst().hiddenSize();
        float[] x = randomInput(Arrays.stream(rows).sum(), hidden, seed);
        float[] got = poisoned(x.length);
        backend.computeGroup(experts, x, rows, got);
        report(name + ", tile " + (tile == null ? "auto" : tile.suffix()) + ", rows " + Arrays.toString(rows), got,
                reference(experts, x, rows));
    }

    private void single(CudaBackend backend, ExpertWeights expert, int rows, long seed) {
        backend.forceTile(null);
        float[] x = randomInput(rows, expert.hiddenSize(), seed);
        float[] got = poisoned(x.length);
        backend.computeGroup(List.of(expert), x, new int[] {rows}, got);
        report("ExpertBackend.compute, one expert, rows " + rows, got, reference(List.of(expert), x, new int[] {rows}));
    }

    private void pipelined(CudaBackend backend, List<ExpertWeights> experts, long seed) {
        backend.forceTile(null);
        int[] rowsA = {7, 0, 90, 3, 0, 64};
        int[] rowsB = {200, 1, 0, 0, 33, 2};
        int hidden = experts.getFirst().hiddenSize();
        SplittableRandom r = new SplittableRandom(seed);
        float[] xa = randomInput(Arrays.stream(rowsA).sum(), hidden, r.nextLong());
        float[] xb = randomInput(Arrays.stream(rowsB).sum(), hidden, r.nextLong());
        float[] ya = poisoned(xa.length);
        float[] yb = poisoned(xb.length);
        CudaBackend.PendingBatch a = backend.submit(experts, xa, rowsA, ya);
        CudaBackend.PendingBatch b = backend.submit(experts, xb, rowsB, yb); // its upload overlaps a's kernels
        a.await();
        b.await();
        report("two batches in flight (double buffer), first", ya, reference(experts, xa, rowsA));
        report("two batches in flight (double buffer), second", yb, reference(experts, xb, rowsB));
    }

    /**
     * A round as the worker builds it: two received batches and their results in the backend's pinned
     * memory (bf16 rows go up from where they lie and come down into the results by DMA), a third
     * batch on the heap with an f32 result (through the staging buffers), and experts with slices in
     * two batches. Every output must equal the same batch through {@link CudaBackend#computeGroup}
     * bit for bit (same tile, same bf16 rows), and the cpu reference within the tolerance.
     */
    private void pinnedRound(CudaBackend backend, List<ExpertWeights> experts, long seed) {
        TileConfig tile = backend.kernels().tiles().getFirst();
        backend.forceTile(tile);
        int hidden = experts.getFirst().hiddenSize();
        HostAllocator pinned = backend.hostAllocator();
        SplittableRandom r = new SplittableRandom(seed);
        int[][] sliceExperts = {{0, 1, 2}, {1, 2, 3}, {0, 3, 4}};
        int[][] sliceRows = {{7, 90, 3}, {64, 1, 40}, {5, 12, 0}};
        List<MemorySegment> pinnedBuffers = new ArrayList<>();
        List<Round.Slice> slices = new ArrayList<>();
        List<RowBatch> outputs = new ArrayList<>();
        List<float[]> inputs = new ArrayList<>();
        try {
            for (int b = 0; b < sliceRows.length; b++) {
                int total = Arrays.stream(sliceRows[b]).sum();
                boolean inPinned = b < 2;
                // batch 1's rows start at an odd address, as a message's bytes field may
                long skew = b == 1 ? 3 : 0;
                RowBatch in = inPinned ? RowBatch.over(pinnedAllocate(pinned, pinnedBuffers, 2L * total * hidden + skew).asSlice(skew),
                        DType.BF16, total, hidden) : RowBatch.onHeap(DType.BF16, total, hidden);
                RowBatch out = inPinned ? RowBatch.over(pinnedAllocate(pinned, pinnedBuffers, 2L * total * hidden), DType.BF16, total, hidden)
                        : RowBatch.onHeap(DType.F32, total, hidden);
                out.data().fill((byte) 0xff); // NaN in every dtype: rows the round fails to write show up
                float[] x = randomInput(total, hidden, r.nextLong());
                for (int row = 0; row < total; row++) {
                    in.putRow(row, x, row * hidden, 1f);
                }
                float[] exact = new float[total * hidden]; // the bf16 rows as sent, widened
                in.widen(0, total, exact, 0);
                inputs.add(exact);
                int at = 0;
                for (int s = 0; s < sliceRows[b].length; s++) {
                    slices.add(new Round.Slice(experts.get(sliceExperts[b][s]), in.slice(at, sliceRows[b][s]), out.slice(at, sliceRows[b][s])));
                    at += sliceRows[b][s];
                }
                outputs.add(out);
            }
            CudaBackend.PendingBatch round = backend.submit(new Round(slices));
            round.await();
            long expectedDirect = 2L * 2 * hidden * (Arrays.stream(sliceRows[0]).sum() + Arrays.stream(sliceRows[1]).sum());
            String dma = String.format(Locale.ROOT, "%-4s round from pinned bf16: %d bytes by DMA from and to where they lie (expected %d)",
                    round.directBytes() == expectedDirect ? "PASS" : "FAIL", round.directBytes(), expectedDirect);
            System.out.println(dma);
            if (round.directBytes() != expectedDirect) {
                fail(dma);
            }
            for (int b = 0; b < sliceRows.length; b++) {
                List<ExpertWeights> batchExperts = Arrays.stream(sliceExperts[b]).mapToObj(experts::get).toList();
                float[] alone = poisoned(inputs.get(b).length);
                backend.computeGroup(batchExperts, inputs.get(b), sliceRows[b], alone);
                RowBatch out = outputs.get(b);
                float[] got = new float[out.rows() * hidden];
                out.widen(0, out.rows(), got, 0);
                long differing = IntStream.range(0, got.length).filter(i -> Float.floatToRawIntBits(got[i]) != Float.floatToRawIntBits(alone[i])).count();
                String name = "round from " + (b < 2 ? "pinned bf16 (DMA both ways)" : "heap, f32 result (staged)") + ", batch " + b
                        + ", tile " + tile.suffix();
                if (differing > 0) {
                    String line = String.format(Locale.ROOT, "FAIL %-70s %d values differ from computeGroup", name, differing);
                    System.out.println(line);
                    fail(line);
                }
                report(name, got, reference(batchExperts, inputs.get(b), sliceRows[b]));
            }
        } finally {
            backend.forceTile(null);
            pinnedBuffers.forEach(pinned::free);
        }
    }

    private static MemorySegment pinnedAllocate(HostAllocator pinned, List<MemorySegment> owned, long bytes) {
        MemorySegment s = pinned.allocate(bytes);
        owned.add(s);
        return s.asSlice(0, bytes);
    }

    private void memoryAccounting(CudaBackend backend, ExpertWeights extra) {
        DeviceMemory before = backend.deviceMemory();
        backend.unload(extra);
        DeviceMemory after = backend.deviceMemory();
        // bf16 weights, and on Hopper the expert's two tensor maps; FP8: one byte a weight and the scales.
        boolean bf16 = WeightLayout.deviceDtype(extra.dtype()) == DType.BF16;
        long expected = WeightLayout.gateUpBytes(extra) + WeightLayout.downBytes(extra)
                + (bf16 && backend.kernels().hopper() ? 2L * TensorMaps.BYTES : 0);
        boolean ok = before.expertBytes() - after.expertBytes() == expected
                && after.residentExperts() == before.residentExperts() - 1;
        String line = String.format(Locale.ROOT, "%-4s unload of a %s expert frees %d bytes of expert memory (accounted %d -> %d bytes,"
                + " %d -> %d experts; driver free %d -> %d MiB)", ok ? "PASS" : "FAIL", bf16 ? "bf16" : "FP8", expected, before.expertBytes(),
                after.expertBytes(), before.residentExperts(), after.residentExperts(), before.freeBytes() >> 20,
                after.freeBytes() >> 20);
        System.out.println(line);
        if (!ok) {
            fail(line);
        }
    }

    private void report(String name, float[] got, float[] expected) {
        int firstBad = -1;
        for (int i = 0; i < got.length && firstBad < 0; i++) {
            if (!Float.isFinite(got[i])) {
                firstBad = i;
            }
        }
        double err = relativeError(got, expected);
        boolean ok = firstBad < 0 && err < TOLERANCE;
        String line = String.format(Locale.ROOT, "%-4s %-70s rel err %.2e%s", ok ? "PASS" : "FAIL", name, err,
                firstBad >= 0 ? " (non-finite output at index " + firstBad + ")" : "");
        System.out.println(line);
        if (!ok) {
            fail(line);
        }
    }

    private void fail(String line) {
        failures.add(line);
    }

    static double relativeError(float[] got, float[] expected) {
        double diff = 0;
        double norm = 0;
        for (int i = 0; i < expected.length; i++) {
            double d = (double) got[i] - expected[i];
            diff += d * d;
            norm += (double) expected[i] * expected[i];
        }
        return Math.sqrt(diff / norm);
    }

    private static float[] reference(List<ExpertWeights> experts, float[] x, int[] rows) {
        int hidden = experts.getFirst().hiddenSize();
        float[] out = new float[x.length];
        try (CpuBackend cpu = new CpuBackend()) {
            int row = 0;
            for (int e = 0; e < rows.length; e++) {
                if (rows[e] == 0) {
                    continue;
                }
                float[] in = Arrays.copyOfRange(x, row * hidden, (row + rows[e]) * hidden);
                float[] o = new float[in.length];
                experts.get(e).forward(in, rows[e], o);
                System.arraycopy(o, 0, out, row * hidden, o.length);
                row += rows[e];
            }
        }
        return out;
    }

    private static float[] poisoned(int n) {
        float[] a = new float[n];
        Arrays.fill(a, Float.NaN);
        return a;
    }

    private static float[] randomInput(int rows, int hidden, long seed) {
        SplittableRandom r = new SplittableRandom(seed);
        float[] x = new float[rows * hidden];
        for (int i = 0; i < x.length; i++) {
            x[i] = (float) (r.nextDouble() * 2 - 1);
        }
        return x;
    }

    private static List<ExpertWeights> experts(Arena arena, int count, int hidden, int intermediate, long seed) {
        List<ExpertWeights> list = new ArrayList<>();
        SplittableRandom r = new SplittableRandom(seed);
        for (int e = 0; e < count; e++) {
            list.add(new ExpertWeights(
                    randomBf16(arena, intermediate, hidden, r.nextLong()),
                    randomBf16(arena, intermediate, hidden, r.nextLong()),
                    randomBf16(arena, hidden, intermediate, r.nextLong())));
        }
        return list;
    }

    /** Uniform weights with unit-variance outputs for unit-variance inputs ({@code ±sqrt(3 / fan_in)}). */
    private static Tensor randomBf16(Arena arena, int rows, int cols, long seed) {
        MemorySegment seg = arena.allocate((long) rows * cols * 2, 64);
        double scale = Math.sqrt(3.0 / cols);
        IntStream.range(0, rows).parallel().forEach(row -> {
            SplittableRandom r = new SplittableRandom(seed ^ (row * 0x9E3779B97F4A7C15L));
            long base = (long) row * cols * 2;
            for (int c = 0; c < cols; c++) {
                seg.set(SHORT_LE, base + 2L * c, Numerics.toBf16((float) ((r.nextDouble() * 2 - 1) * scale)));
            }
        });
        return new Tensor(DType.BF16, new long[] {rows, cols}, seg);
    }

    /**
     * FP8 experts quantized per output channel as an FP8 checkpoint's are (uniform weights of
     * {@code ±sqrt(3 / fan_in)}, scale = row max / 448); {@code subnormalOnly}: random zero and
     * subnormal codes (exponent field 0), scaled to the same output size, so a widening that lost
     * subnormal codes (flushed them to zero) fails the check.
     */
    static List<ExpertWeights> fp8Experts(Arena arena, int count, int hidden, int intermediate, long seed,
            boolean subnormalOnly) {
        List<ExpertWeights> list = new ArrayList<>();
        SplittableRandom r = new SplittableRandom(seed);
        for (int e = 0; e < count; e++) {
            float[][] scales = new float[3][];
            Tensor gate = randomFp8(arena, intermediate, hidden, r.nextLong(), subnormalOnly, scales, 0);
            Tensor up = randomFp8(arena, intermediate, hidden, r.nextLong(), subnormalOnly, scales, 1);
            Tensor down = randomFp8(arena, hidden, intermediate, r.nextLong(), subnormalOnly, scales, 2);
            list.add(new ExpertWeights(gate, up, down, new ChannelScales(scales[0], scales[1], scales[2])));
        }
        return list;
    }

    private static Tensor randomFp8(Arena arena, int rows, int cols, long seed, boolean subnormalOnly, float[][] scales, int which) {
        MemorySegment seg = arena.allocate((long) rows * cols, 64);
        float[] rowScale = new float[rows];
        double bound = Math.sqrt(3.0 / cols);
        // RMS of codes 0..7 of either sign, m x 2^-9: sqrt(mean(m^2)) = sqrt(17.5) x 2^-9
        double subnormalRms = Math.sqrt(17.5) / 512;
        IntStream.range(0, rows).parallel().forEach(row -> {
            SplittableRandom r = new SplittableRandom(seed ^ (row * 0x9E3779B97F4A7C15L));
            long base = (long) row * cols;
            if (subnormalOnly) {
                rowScale[row] = (float) (bound / Math.sqrt(3) / subnormalRms);
                for (int c = 0; c < cols; c++) {
                    seg.set(ValueLayout.JAVA_BYTE, base + c, (byte) (r.nextInt(8) | (r.nextBoolean() ? 0x80 : 0)));
                }
                return;
            }
            float[] v = new float[cols];
            float max = 0;
            for (int c = 0; c < cols; c++) {
                v[c] = (float) ((r.nextDouble() * 2 - 1) * bound);
                max = Math.max(max, Math.abs(v[c]));
            }
            rowScale[row] = max > 0 ? max / Numerics.FP8_E4M3_MAX : 1f;
            for (int c = 0; c < cols; c++) {
                seg.set(ValueLayout.JAVA_BYTE, base + c, Numerics.toFp8(v[c] / rowScale[row]));
            }
        });
        scales[which] = rowScale;
        return new Tensor(DType.FP8_E4M3, new long[] {rows, cols}, seg);
    }

    // ---- (b) throughput ----

    private static double ffnFlops(int experts, int rows, int hidden, int intermediate) {
        return 6.0 * experts * rows * hidden * intermediate;
    }

    /** Our kernels alone, on device-resident weights and inputs made by moe_fill_random_bf16. */
    private void kernelThroughput(CudaBackend backend) {
        System.out.println();
        System.out.printf(Locale.ROOT, "== (b) expert FFN kernels: %d experts, hidden %d, intermediate %d, bf16; median of %d ==%n",
                BENCH_EXPERTS, BENCH_HIDDEN, BENCH_INTERMEDIATE, reps);
        int maxRows = Arrays.stream(BENCH_ROWS).max().orElseThrow() * BENCH_EXPERTS;
        long h = BENCH_HIDDEN;
        long inter = BENCH_INTERMEDIATE;
        List<DeviceBuffer> owned = new ArrayList<>();
        CUstream stream = new CUstream();
        CUevent[] ev = {new CUevent(), new CUevent(), new CUevent()};
        PinnedBuffer slots = null;
        try {
            backend.device().makeCurrent();
            CudaFailure.check(cuStreamCreate(stream, CUstream_flags.CU_STREAM_NON_BLOCKING), "cuStreamCreate");
            for (CUevent e : ev) {
                CudaFailure.check(cuEventCreate(e, CUevent_flags.CU_EVENT_DEFAULT), "cuEventCreate");
            }
            FfnKernels k = backend.kernels();
            long[] gateUp = new long[BENCH_EXPERTS];
            long[] down = new long[BENCH_EXPERTS];
            // The Hopper kernels' slots hold tensor-map addresses: one gate/up and one down map per expert.
            long[] gateUpMaps = new long[BENCH_EXPERTS];
            long[] downMaps = new long[BENCH_EXPERTS];
            byte[] maps = new byte[2 * BENCH_EXPERTS * TensorMaps.BYTES];
            for (int e = 0; e < BENCH_EXPERTS; e++) {
                DeviceBuffer gu = own(owned, 4 * inter * h);
                DeviceBuffer dn = own(owned, 2 * h * inter);
                k.fillRandomBf16(gu.address(), 2 * inter * h, 1000 + e, (float) Math.sqrt(3.0 / h), stream);
                k.fillRandomBf16(dn.address(), h * inter, 2000 + e, (float) Math.sqrt(3.0 / inter), stream);
                gateUp[e] = gu.address();
                down[e] = dn.address();
                if (k.hopper()) {
                    System.arraycopy(TensorMaps.encode(new TensorMaps.Bf16Matrix(gu.address(), 2 * inter, h, Sm90Layout.B_BOX_ROWS)),
                            0, maps, 2 * e * TensorMaps.BYTES, TensorMaps.BYTES);
                    System.arraycopy(TensorMaps.encode(new TensorMaps.Bf16Matrix(dn.address(), h, inter, Sm90Layout.B_BOX_ROWS)),
                            0, maps, (2 * e + 1) * TensorMaps.BYTES, TensorMaps.BYTES);
                }
            }
            if (k.hopper()) {
                DeviceBuffer devMaps = own(owned, maps.length);
                CudaFailure.check(cuMemcpyHtoD(devMaps, Pointer.to(maps), maps.length), "cuMemcpyHtoD(tensor maps)");
                for (int e = 0; e < BENCH_EXPERTS; e++) {
                    gateUpMaps[e] = devMaps.address() + 2L * e * TensorMaps.BYTES;
                    downMaps[e] = devMaps.address() + (2L * e + 1) * TensorMaps.BYTES;
                }
            }
            DeviceBuffer x = own(owned, maxRows * h * 2);
            DeviceBuffer act = own(owned, maxRows * inter * 2);
            DeviceBuffer y = own(owned, maxRows * h * 2); // bf16 outputs
            DeviceBuffer devSlots = own(owned, 2L * BENCH_EXPERTS * LaunchPlan.SLOT_BYTES);
            slots = PinnedBuffer.allocate(2L * BENCH_EXPERTS * LaunchPlan.SLOT_BYTES);
            k.fillRandomBf16(x.address(), maxRows * h, 3000, 1f, stream);
            CudaFailure.check(cuStreamSynchronize(stream), "fill");

            for (int rowsPerExpert : BENCH_ROWS) {
                int[] rows = new int[BENCH_EXPERTS];
                Arrays.fill(rows, rowsPerExpert);
                double flops = ffnFlops(BENCH_EXPERTS, rowsPerExpert, BENCH_HIDDEN, BENCH_INTERMEDIATE);
                for (TileConfig tile : k.tiles()) {
                    LaunchPlan gu = LaunchPlan.gateUp(tile, rows, BENCH_HIDDEN, BENCH_INTERMEDIATE);
                    LaunchPlan dn = LaunchPlan.down(tile, rows, BENCH_HIDDEN, BENCH_INTERMEDIATE);
                    gu.writeSlots(slots.segment(), tile.hopper ? gateUpMaps : gateUp);
                    dn.writeSlots(slots.segment().asSlice(gu.slotBytes()), tile.hopper ? downMaps : down);
                    CudaFailure.check(cuMemcpyHtoD(devSlots, slots.pointer(0), gu.slotBytes() + dn.slotBytes()), "cuMemcpyHtoD(slots)");
                    long outValues = (long) rowsPerExpert * BENCH_EXPERTS * h;
                    CudaFailure.check(cuMemsetD32Async(y, 0x7fc00000, outValues, stream), "poison");
                    double[] total = new double[reps];
                    double[] first = new double[reps];
                    double[] second = new double[reps];
                    for (int rep = -3; rep < reps; rep++) {
                        CudaFailure.check(cuEventRecord(ev[0], stream), "cuEventRecord");
                        k.launchGateUp(gu, devSlots.address(), x.address(), act.address(), stream);
                        CudaFailure.check(cuEventRecord(ev[1], stream), "cuEventRecord");
                        k.launchDown(dn, devSlots.address() + gu.slotBytes(), act.address(), y.address(), stream);
                        CudaFailure.check(cuEventRecord(ev[2], stream), "cuEventRecord");
                        CudaFailure.check(cuEventSynchronize(ev[2]), "kernels (" + tile.suffix() + ", " + rowsPerExpert + " rows)");
                        if (rep >= 0) {
                            first[rep] = elapsed(ev[0], ev[1]);
                            second[rep] = elapsed(ev[1], ev[2]);
                            total[rep] = first[rep] + second[rep];
                        }
                    }
                    int nonFinite = countNonFinite(y, outValues);
                    double ms = median(total);
                    String line = String.format(Locale.ROOT,
                            "ours %-13s rows/expert %5d: %8.3f ms = %6.1f TFLOP/s (gate/up %.3f ms, down %.3f ms; grid %d + %d; padded rows %d)%s",
                            tile.suffix(), rowsPerExpert, ms, flops / ms / 1e9, median(first), median(second),
                            gu.gridSize(), dn.gridSize(), gu.paddedRows(),
                            nonFinite > 0 ? "  FAIL: " + nonFinite + " outputs not finite" : "");
                    System.out.println(line);
                    if (nonFinite > 0) {
                        fail(line);
                    }
                    recordKernels(rowsPerExpert, tile, ms);
                }
            }
        } catch (RuntimeException e) {
            fail("kernel throughput section stopped: " + e);
            e.printStackTrace(System.out);
        } finally {
            for (DeviceBuffer b : owned) {
                b.free();
            }
            if (slots != null) {
                slots.free();
            }
            for (CUevent e : ev) {
                cuEventDestroy(e);
            }
            cuStreamDestroy(stream);
        }
    }

    private static DeviceBuffer own(List<DeviceBuffer> owned, long bytes) {
        DeviceBuffer b = DeviceBuffer.allocate(bytes);
        owned.add(b);
        return b;
    }

    private static double elapsed(CUevent from, CUevent to) {
        float[] ms = new float[1];
        CudaFailure.check(cuEventElapsedTime(ms, from, to), "cuEventElapsedTime");
        return ms[0];
    }

    private static int countNonFinite(DeviceBuffer y, long values) {
        short[] host = new short[Math.toIntExact(values)];
        CudaFailure.check(cuMemcpyDtoH(Pointer.to(host), y, values * 2), "cuMemcpyDtoH(outputs)");
        int bad = 0;
        for (short v : host) {
            if ((v & 0x7f80) == 0x7f80) { // bf16 exponent all ones: infinity or NaN
                bad++;
            }
        }
        return bad;
    }

    private static double median(double[] v) {
        double[] s = v.clone();
        Arrays.sort(s);
        return s.length % 2 == 1 ? s[s.length / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
    }

    /** Through the backend from host float[] to host float[]: bf16 conversion, PCIe both ways, kernels. */
    private void endToEnd(CudaBackend backend) {
        System.out.println();
        System.out.println("== (b) end to end through CudaBackend.computeGroup (f32 rows in and out, transfers included) ==");
        try (Arena arena = Arena.ofShared()) {
            List<ExpertWeights> experts = experts(arena, BENCH_EXPERTS, BENCH_HIDDEN, BENCH_INTERMEDIATE, 42);
            long start = System.nanoTime();
            for (ExpertWeights w : experts) {
                backend.preload(w);
            }
            double uploadS = (System.nanoTime() - start) / 1e9;
            DeviceMemory mem = backend.deviceMemory();
            System.out.printf(Locale.ROOT, "uploaded %d experts (%d MiB) in %.2f s; device free %d of %d MiB%n",
                    mem.residentExperts(), mem.expertBytes() >> 20, uploadS, mem.freeBytes() >> 20, mem.totalBytes() >> 20);
            for (int rowsPerExpert : new int[] {256, 2048}) {
                int[] rows = new int[BENCH_EXPERTS];
                Arrays.fill(rows, rowsPerExpert);
                float[] x = randomInput(rowsPerExpert * BENCH_EXPERTS, BENCH_HIDDEN, rowsPerExpert);
                float[] y = new float[x.length];
                float[] y2 = new float[x.length];
                backend.computeGroup(experts, x, rows, y); // warm-up: buffers grow to size
                int n = 5;
                double[] serial = new double[n];
                double kernelMs = 0;
                for (int i = 0; i < n; i++) {
                    long t = System.nanoTime();
                    CudaBackend.PendingBatch p = backend.submit(experts, x, rows, y);
                    p.await();
                    serial[i] = (System.nanoTime() - t) / 1e6;
                    kernelMs = p.kernelMillis();
                }
                long t = System.nanoTime();
                CudaBackend.PendingBatch previous = backend.submit(experts, x, rows, y);
                for (int i = 1; i < n; i++) {
                    CudaBackend.PendingBatch next = backend.submit(experts, x, rows, (i & 1) == 1 ? y2 : y);
                    previous.await();
                    previous = next;
                }
                previous.await();
                double pipelinedMs = (System.nanoTime() - t) / 1e6 / n;
                double flops = ffnFlops(BENCH_EXPERTS, rowsPerExpert, BENCH_HIDDEN, BENCH_INTERMEDIATE);
                String line = String.format(Locale.ROOT,
                        "rows/expert %5d: one batch at a time %.2f ms (%.1f TFLOP/s, kernels %.2f ms); two in flight %.2f ms per batch (%.1f TFLOP/s)",
                        rowsPerExpert, median(serial), flops / median(serial) / 1e9, kernelMs, pipelinedMs, flops / pipelinedMs / 1e9);
                System.out.println(line);
                endToEnd.put(rowsPerExpert, String.format(Locale.ROOT, "%.1f / %.1f", flops / median(serial) / 1e9, flops / pipelinedMs / 1e9));
            }
            for (ExpertWeights w : experts) {
                backend.unload(w);
            }
        } catch (RuntimeException e) {
            fail("end-to-end section stopped: " + e);
            e.printStackTrace(System.out);
        }
    }

    /** FP8 experts of Scout's shape through the backend: the fp8 kernels' time and the whole round's. */
    private void fp8Throughput(CudaBackend backend) {
        System.out.println();
        System.out.printf(Locale.ROOT, "== (b) FP8 experts (e4m3 + per-channel scales, widened in the mma.sync tile loader):"
                + " %d experts, hidden %d, intermediate %d, through CudaBackend.computeGroup ==%n", BENCH_EXPERTS, BENCH_HIDDEN,
                BENCH_INTERMEDIATE);
        backend.forceTile(null);
        try (Arena arena = Arena.ofShared()) {
            long start = System.nanoTime();
            List<ExpertWeights> experts = fp8Experts(arena, BENCH_EXPERTS, BENCH_HIDDEN, BENCH_INTERMEDIATE, 43, false);
            double quantizeS = (System.nanoTime() - start) / 1e9;
            start = System.nanoTime();
            experts.forEach(backend::preload);
            double uploadS = (System.nanoTime() - start) / 1e9;
            DeviceMemory mem = backend.deviceMemory();
            System.out.printf(Locale.ROOT, "quantized in %.2f s, uploaded %d experts (%d MiB, %d bytes each) in %.2f s%n",
                    quantizeS, mem.residentExperts(), mem.expertBytes() >> 20, experts.getFirst().byteSize(), uploadS);
            for (int rowsPerExpert : BENCH_ROWS) {
                int[] rows = new int[BENCH_EXPERTS];
                Arrays.fill(rows, rowsPerExpert);
                float[] x = randomInput(rowsPerExpert * BENCH_EXPERTS, BENCH_HIDDEN, rowsPerExpert);
                float[] y = new float[x.length];
                backend.computeGroup(experts, x, rows, y); // warm-up: buffers grow to size
                int n = 7;
                double[] kernels = new double[n];
                double[] total = new double[n];
                for (int i = 0; i < n; i++) {
                    long t = System.nanoTime();
                    CudaBackend.PendingBatch p = backend.submit(experts, x, rows, y);
                    p.await();
                    total[i] = (System.nanoTime() - t) / 1e6;
                    kernels[i] = p.kernelMillis();
                }
                recordFp8(rowsPerExpert, median(kernels), median(total));
                double flops = ffnFlops(BENCH_EXPERTS, rowsPerExpert, BENCH_HIDDEN, BENCH_INTERMEDIATE);
                System.out.printf(Locale.ROOT, "fp8 %-13s rows/expert %5d: kernels %8.3f ms = %6.1f TFLOP/s; one batch end to end %.2f ms%n",
                        TileConfig.forRows(rowsPerExpert, hopper, DType.FP8_E4M3).suffix(), rowsPerExpert, median(kernels),
                        flops / median(kernels) / 1e9, median(total));
            }
            for (ExpertWeights w : experts) {
                backend.unload(w);
            }
        } catch (RuntimeException e) {
            fail("FP8 throughput section stopped: " + e);
            e.printStackTrace(System.out);
        }
    }

    // ---- summary ----

    /**
     * torch_ffn.py's TSV: {@code torch_matmul|torch_ffn|torch_scaled_mm <TAB> rows <TAB> ms <TAB> tflops};
     * empty if absent.
     */
    static Map<String, double[]> readTorch(Path file) throws IOException {
        Map<String, double[]> m = new LinkedHashMap<>();
        if (file == null || !Files.exists(file)) {
            return m;
        }
        for (String line : Files.readAllLines(file)) {
            String[] f = line.split("\t");
            if (f.length == 4 && f[0].startsWith("torch_")) {
                m.put(f[0] + " " + f[1], new double[] {Double.parseDouble(f[2]), Double.parseDouble(f[3])});
            }
        }
        return m;
    }

    private void printSummary(String device) {
        System.out.println();
        summary(device).forEach(System.out::println);
    }

    /** Records a kernel timing, as the throughput section does. */
    void recordKernels(int rowsPerExpert, TileConfig tile, double ms) {
        ourKernels.put(rowsPerExpert + " " + tile.name(), ms);
    }

    /** Records the FP8 experts' median kernel and end-to-end milliseconds, as the FP8 throughput section does. */
    void recordFp8(int rowsPerExpert, double kernelMs, double endToEndMs) {
        fp8.put(rowsPerExpert, new double[] {kernelMs, endToEndMs});
    }

    /** Sets whether the Hopper tiles were loaded, as opening the backend does. */
    void hopper(boolean loaded) {
        this.hopper = loaded;
    }

    /** The summary table (markdown, for bench/RESULTS.md) and the result line. */
    List<String> summary(String device) {
        List<String> out = new ArrayList<>();
        out.add(String.format(Locale.ROOT, "== summary: expert FFN, %d experts x rows, hidden %d, intermediate %d, bf16 | %s ==",
                BENCH_EXPERTS, BENCH_HIDDEN, BENCH_INTERMEDIATE, device));
        StringBuilder head = new StringBuilder("| rows/expert |");
        for (TileConfig t : TileConfig.values()) {
            head.append(" ours ").append(t.suffix()).append(" TFLOP/s |");
        }
        head.append(" auto tile | torch.matmul TFLOP/s | torch FFN TFLOP/s | ours (auto) / torch.matmul | ours (best) / torch.matmul |"
                + " end to end 1 / 2 in flight TFLOP/s | torch._scaled_mm fp8 TFLOP/s |");
        out.add(head.toString());
        out.add("|" + " --- |".repeat(TileConfig.values().length + 8));
        for (int rows : BENCH_ROWS) {
            double flops = ffnFlops(BENCH_EXPERTS, rows, BENCH_HIDDEN, BENCH_INTERMEDIATE);
            StringBuilder line = new StringBuilder("| " + rows + " |");
            double best = Double.NaN;
            for (TileConfig t : TileConfig.values()) {
                Double ms = ourKernels.get(rows + " " + t.name());
                line.append(' ').append(tflops(flops, ms)).append(" |");
                if (ms != null && !(flops / ms / 1e9 <= best)) {
                    best = flops / ms / 1e9;
                }
            }
            TileConfig auto = TileConfig.forRows(rows, hopper);
            Double ours = ourKernels.get(rows + " " + auto.name());
            double[] mm = torch.get("torch_matmul " + rows);
            double[] ffn = torch.get("torch_ffn " + rows);
            double[] fp8 = torch.get("torch_scaled_mm " + rows);
            line.append(' ').append(auto.suffix()).append(" | ")
                    .append(mm == null ? "n/a" : String.format(Locale.ROOT, "%.1f", mm[1])).append(" | ")
                    .append(ffn == null ? "n/a" : String.format(Locale.ROOT, "%.1f", ffn[1])).append(" | ")
                    .append(ours == null || mm == null ? "n/a" : String.format(Locale.ROOT, "%.0f%%", 100 * (flops / ours / 1e9) / mm[1]))
                    .append(" | ")
                    .append(Double.isNaN(best) || mm == null ? "n/a" : String.format(Locale.ROOT, "%.0f%%", 100 * best / mm[1]))
                    .append(" | ").append(endToEnd.getOrDefault(rows, "n/a")).append(" | ")
                    .append(fp8 == null ? "n/a" : String.format(Locale.ROOT, "%.1f", fp8[1])).append(" |");
            out.add(line.toString());
        }
        for (Map.Entry<Integer, double[]> f : fp8.entrySet()) {
            int rows = f.getKey();
            double flops = ffnFlops(BENCH_EXPERTS, rows, BENCH_HIDDEN, BENCH_INTERMEDIATE);
            Double bf16 = ourKernels.get(rows + " " + TileConfig.forRows(rows, hopper).name());
            out.add(String.format(Locale.ROOT, "FP8 weights, rows/expert %d: fp8 kernels (%s) %.1f TFLOP/s, %s the bf16 kernels'"
                    + " (auto tile); one batch end to end %.2f ms", rows, TileConfig.forRows(rows, hopper, DType.FP8_E4M3).suffix(),
                    flops / f.getValue()[0] / 1e9,
                    bf16 == null ? "n/a x" : String.format(Locale.ROOT, "%.2fx", bf16 / f.getValue()[0]), f.getValue()[1]));
        }
        out.add(failures.isEmpty() ? "RESULT: correctness PASS" : "RESULT: FAIL (" + failures.size() + ")");
        failures.forEach(f -> out.add("  " + f));
        return out;
    }

    private static String tflops(double flops, Double ms) {
        return ms == null ? "n/a" : String.format(Locale.ROOT, "%.1f", flops / ms / 1e9);
    }
}
