package dev.moecluster.worker.cuda;

import static org.assertj.core.api.Assertions.assertThat;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.moecluster.core.moe.ChannelScales;
import dev.moecluster.core.moe.ExpertWeights;
import dev.moecluster.core.tensor.DType;
import dev.moecluster.core.tensor.Numerics;
import dev.moecluster.core.tensor.Tensor;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * Runs the real kernels of {@code moe_ffn.cu} on the CPU through {@code src/test/cuda/moe_emulator.cpp}
 * (a warp-level emulation of ldmatrix, mma.sync and cp.async), and the Hopper kernels of
 * {@code moe_ffn_sm90.cu} through {@code moe_emulator_sm90.cpp} (TMA with the 128-byte swizzle,
 * mbarriers, wgmma through shared-memory descriptors), with launch plans, slot tables and weight
 * layouts made by the backend's own Java code, and compares with the cpu backend. Shapes are chosen to
 * hit every edge: an expert of one row, an expert with no rows, partial row tiles, a partial column
 * tile, a k extent that is not a multiple of the pipeline's slice, and more slices than stages; the
 * Hopper launches run on {@value #EMULATED_MULTIPROCESSORS} persistent blocks, so each block walks
 * several tiles and the mbarrier ring wraps many times. The FP8 kernels run the same shapes on FP8
 * experts (every finite e4m3 code, one expert of subnormal codes only, random per-channel scales) against
 * the cpu backend's FP8 kernel, and their code-to-bf16 widening is checked on all 256 codes.
 */
class CudaKernelEmulationTest {

    /** Multiprocessors of the emulated GPU: the persistent Hopper launches' block count. */
    static final int EMULATED_MULTIPROCESSORS = 3;

    @TempDir
    static Path build;
    static Path emulator;
    static Path sm90Emulator;

    @BeforeAll
    static void compileEmulator() throws Exception {
        assumeTrue(run(List.of("bash", "-c", "command -v g++"), build) == 0, "g++ is not installed");
        emulator = build.resolve("moe_emulator");
        int rc = run(List.of("g++", "-std=c++17", "-O2", "-Wall", "-Wno-unknown-pragmas", "-o", emulator.toString(),
                "src/test/cuda/moe_emulator.cpp"), build);
        assertThat(rc).as("the emulator did not compile").isZero();
        sm90Emulator = build.resolve("moe_emulator_sm90");
        rc = run(List.of("g++", "-std=c++17", "-O2", "-Wall", "-Wno-unknown-pragmas", "-Wno-psabi", "-o", sm90Emulator.toString(),
                "src/test/cuda/moe_emulator_sm90.cpp"), build);
        assertThat(rc).as("the sm90 emulator did not compile").isZero();
    }

    /** k of gate/up: 4 full 32-wide slices and a partial one (FP8 rows: 136 codes padded to 144). */
    static final int HIDDEN = 136;
    /** n of gate/up is 400 (a partial 256-wide tile); k of down is 200 (FP8 rows padded to 208). */
    static final int INTERMEDIATE = 200;
    /** An expert of one row, one of several row tiles, one with no rows, one with a partial last tile. */
    static final int[] ROWS = {1, 70, 0, 130};

    @ParameterizedTest(name = "{0} tiles, {1} copies")
    @CsvSource({"LARGE, deferred", "MEDIUM, deferred", "SMALL, deferred", "SMALL, eager",
            "HOPPER_LARGE, deferred", "HOPPER_MEDIUM, deferred", "HOPPER_SMALL, deferred", "HOPPER_LARGE, eager",
            "HOPPER_MEDIUM, eager", "HOPPER_SMALL, eager"})
    void kernelsComputeTheExpertFfnOfEveryExpertInTheBatch(TileConfig tile, String copies, @TempDir Path dir) throws Exception {
        SplittableRandom random = new SplittableRandom(tile.ordinal() * 31L + copies.length());
        try (Arena arena = Arena.ofShared()) { // the cpu backend's GEMM reads the weights from its pool
            List<ExpertWeights> experts = new ArrayList<>();
            for (int e = 0; e < ROWS.length; e++) {
                experts.add(new ExpertWeights(
                        randomBf16(arena, random, INTERMEDIATE, HIDDEN, 1 / Math.sqrt(HIDDEN)),
                        randomBf16(arena, random, INTERMEDIATE, HIDDEN, 1 / Math.sqrt(HIDDEN)),
                        randomBf16(arena, random, HIDDEN, INTERMEDIATE, 1 / Math.sqrt(INTERMEDIATE))));
            }
            assertTheKernelsMatchTheCpuBackend(tile, DType.BF16, copies, experts, random, dir);
        }
    }

    @ParameterizedTest(name = "{0} tiles, {1} copies")
    @CsvSource({"LARGE, deferred", "MEDIUM, deferred", "SMALL, deferred", "SMALL, eager", "MEDIUM, eager"})
    void fp8KernelsComputeTheExpertFfnOfFp8ExpertsAsTheCpuBackendDoes(TileConfig tile, String copies, @TempDir Path dir)
            throws Exception {
        SplittableRandom random = new SplittableRandom(7 + tile.ordinal() * 31L + copies.length());
        try (Arena arena = Arena.ofShared()) {
            List<ExpertWeights> experts = new ArrayList<>();
            for (int e = 0; e < ROWS.length; e++) {
                // The 70-row expert holds only zero and subnormal codes, so a widening that lost them shows.
                experts.add(randomFp8(arena, random, HIDDEN, INTERMEDIATE, e == 1));
            }
            assertTheKernelsMatchTheCpuBackend(tile, DType.FP8_E4M3, copies, experts, random, dir);
        }
    }

    /** Every code as the FP8 kernels widen it: the e4m3fn value, exactly; the NaN codes as ±480, as core's Gemm reads them. */
    @Test
    void fp8CodesWidenToTheirExactValueInEveryBytePosition(@TempDir Path dir) throws Exception {
        int rc = run(List.of(emulator.toString(), dir.toString(), "decode"), dir);
        assertThat(rc).as("emulator failed: %s", Files.readString(dir.resolve("log"))).isZero();
        MemorySegment decoded = MemorySegment.ofArray(Files.readAllBytes(dir.resolve("decode.bin")));
        assertThat(decoded.byteSize()).isEqualTo(256 * 4 * 2);
        ValueLayout.OfShort le = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
        for (int c = 0; c < 256; c++) {
            for (int j = 0; j < 4; j++) { // the word holds codes c, c+1, c+2, c+3 from its low byte up
                int code = (c + j) & 0xff;
                float got = Numerics.fromBf16(decoded.get(le, 2L * (4 * c + j)));
                float expected = (code & 0x7f) == 0x7f ? ((code & 0x80) != 0 ? -480f : 480f) : Numerics.fromFp8((byte) code);
                assertThat(got).as("code 0x%02x in byte %d", code, j).isEqualTo(expected);
                if (code == 0x80) {
                    assertThat(Float.floatToRawIntBits(got)).as("-0 keeps its sign").isEqualTo(0x80000000);
                }
            }
        }
    }

    private void assertTheKernelsMatchTheCpuBackend(TileConfig tile, DType weights, String copies,
            List<ExpertWeights> experts, SplittableRandom random, Path dir) throws Exception {
        int hidden = HIDDEN;
        int intermediate = INTERMEDIATE;
        int[] rows = ROWS;
        try (Arena arena = Arena.ofConfined()) {
            int total = 0;
            for (int r : rows) {
                total += r;
            }
            float[] x = new float[total * hidden];
            for (int i = 0; i < x.length; i++) {
                x[i] = Numerics.fromBf16(Numerics.toBf16((float) (random.nextDouble() * 4 - 2)));
            }

            LaunchPlan gateUp = LaunchPlan.gateUp(tile, weights, rows, null, hidden, intermediate);
            LaunchPlan down = LaunchPlan.down(tile, weights, rows, null, hidden, intermediate);
            long[] index = new long[rows.length];
            for (int e = 0; e < rows.length; e++) {
                index[e] = e; // the emulator swaps each index for the address of that expert's file
            }
            write(dir.resolve("slots_gate_up.bin"), arena, gateUp.slotBytes(), seg -> gateUp.writeSlots(seg, index));
            write(dir.resolve("slots_down.bin"), arena, down.slotBytes(), seg -> down.writeSlots(seg, index));
            write(dir.resolve("x.bin"), arena, 2L * x.length, seg -> bf16(seg, x.length / hidden, hidden).copyFrom(f32(x, x.length / hidden, hidden), 0));
            for (int e = 0; e < rows.length; e++) {
                ExpertWeights w = experts.get(e);
                assertThat(WeightLayout.deviceDtype(w.dtype())).isEqualTo(weights);
                // As ResidentExperts uploads them: FP8 codes, then the matrix's scales.
                long gateUpCodes = WeightLayout.gateUpRows(w) * WeightLayout.rowBytes(weights, hidden);
                long downCodes = WeightLayout.downRows(w) * WeightLayout.rowBytes(weights, intermediate);
                write(dir.resolve("w_gate_up_" + e + ".bin"), arena, WeightLayout.gateUpBytes(w), seg -> {
                    WeightLayout.writeGateUpRows(w, 0, WeightLayout.gateUpRows(w), seg);
                    if (weights == DType.FP8_E4M3) {
                        WeightLayout.writeGateUpScales(w, 0, WeightLayout.gateUpRows(w), seg.asSlice(gateUpCodes));
                    }
                });
                write(dir.resolve("w_down_" + e + ".bin"), arena, WeightLayout.downBytes(w), seg -> {
                    WeightLayout.writeDownRows(w, 0, WeightLayout.downRows(w), seg);
                    if (weights == DType.FP8_E4M3) {
                        WeightLayout.writeDownScales(w, 0, WeightLayout.downRows(w), seg.asSlice(downCodes));
                    }
                });
            }
            List<String> plan = new ArrayList<>(List.of(
                    "variant " + tile.suffix(),
                    "fp8 " + (weights == DType.FP8_E4M3 ? 1 : 0),
                    "threads " + tile.threads,
                    "smem " + tile.sharedMemoryBytes(weights),
                    "experts " + rows.length,
                    "rows " + total,
                    "hidden " + hidden,
                    "intermediate " + intermediate));
            if (tile.hopper) {
                // As FfnKernels launches them: persistent blocks over the plan's tiles, A's box one tile tall.
                plan.addAll(List.of(
                        "grid_gate_up " + Sm90Layout.persistentGrid(gateUp.gridSize(), EMULATED_MULTIPROCESSORS),
                        "grid_down " + Sm90Layout.persistentGrid(down.gridSize(), EMULATED_MULTIPROCESSORS),
                        "tiles_gate_up " + gateUp.gridSize(),
                        "tiles_down " + down.gridSize(),
                        "a_box_rows " + tile.bm,
                        "b_box_rows " + Sm90Layout.B_BOX_ROWS));
            } else {
                plan.addAll(List.of("grid_gate_up " + gateUp.gridSize(), "grid_down " + down.gridSize()));
            }
            Files.writeString(dir.resolve("plan.txt"), String.join("\n", plan) + "\n");

            int rc = run(List.of((tile.hopper ? sm90Emulator : emulator).toString(), dir.toString(), copies), dir);
            assertThat(rc).as("emulator failed: %s", Files.exists(dir.resolve("log")) ? Files.readString(dir.resolve("log")) : "")
                    .isZero();

            // The kernel writes bf16 outputs, as the wire carries them.
            MemorySegment y = MemorySegment.ofArray(Files.readAllBytes(dir.resolve("y.bin")));
            assertThat(y.byteSize()).isEqualTo(2L * total * hidden);
            float[] got = bf16(y, total, hidden).toFloatMatrix().data();

            float[] expected = new float[total * hidden];
            for (int e = 0; e < rows.length; e++) {
                if (rows[e] == 0) {
                    continue;
                }
                int from = gateUp.rowStart()[e] * hidden;
                float[] in = java.util.Arrays.copyOfRange(x, from, from + rows[e] * hidden);
                float[] out = new float[rows[e] * hidden];
                experts.get(e).forward(in, rows[e], out);
                System.arraycopy(out, 0, expected, from, out.length);
            }
            for (int i = 0; i < got.length; i++) {
                assertThat(Float.isFinite(got[i])).as("output %d (row %d) was not written", i, i / hidden).isTrue();
            }
            for (int e = 0; e < rows.length; e++) { // each expert on its own: one wrong expert cannot hide among the others
                int from = gateUp.rowStart()[e] * hidden;
                int to = from + rows[e] * hidden;
                if (to > from) {
                    assertThat(relativeError(java.util.Arrays.copyOfRange(got, from, to), java.util.Arrays.copyOfRange(expected, from, to)))
                            .as("expert %d (%d rows)", e, rows[e]).isLessThan(1e-2);
                }
            }
        }
    }

    private static dev.moecluster.core.tensor.RowBatch bf16(MemorySegment seg, int rows, int width) {
        return new dev.moecluster.core.tensor.RowBatch(dev.moecluster.core.tensor.DType.BF16, rows, width, seg, MemorySegment.NULL);
    }

    private static dev.moecluster.core.tensor.RowBatch f32(float[] x, int rows, int width) {
        return new dev.moecluster.core.tensor.RowBatch(dev.moecluster.core.tensor.DType.F32, rows, width,
                MemorySegment.ofArray(x), MemorySegment.NULL);
    }

    static double relativeError(float[] got, float[] expected) {
        double diff = 0;
        double norm = 0;
        for (int i = 0; i < got.length; i++) {
            double d = (double) got[i] - expected[i];
            diff += d * d;
            norm += (double) expected[i] * expected[i];
        }
        return Math.sqrt(diff / norm);
    }

    /** Finite e4m3 codes: all but the two NaN codes (0x7f, 0xff). */
    private static final byte[] FINITE_CODES = finiteCodes(false);
    /** Zero and the subnormal codes (exponent field 0), both signs. */
    private static final byte[] SUBNORMAL_CODES = finiteCodes(true);

    private static byte[] finiteCodes(boolean subnormalOnly) {
        ByteArrayOutputStream codes = new ByteArrayOutputStream();
        for (int c = 0; c < 256; c++) {
            boolean nan = (c & 0x7f) == 0x7f;
            boolean subnormal = (c & 0x78) == 0;
            if (!nan && (!subnormalOnly || subnormal)) {
                codes.write(c);
            }
        }
        return codes.toByteArray();
    }

    /**
     * An FP8 expert of uniformly drawn codes ({@code subnormalOnly}: zero and subnormal codes only) with
     * per-row scales that give outputs of about unit size, times a random factor per row.
     */
    static ExpertWeights randomFp8(Arena arena, SplittableRandom random, int hidden, int intermediate, boolean subnormalOnly) {
        byte[] codes = subnormalOnly ? SUBNORMAL_CODES : FINITE_CODES;
        double rms = 0;
        for (byte c : codes) {
            rms += Math.pow(Numerics.fromFp8(c), 2);
        }
        rms = Math.sqrt(rms / codes.length);
        Tensor[] t = new Tensor[3];
        float[][] scales = new float[3][];
        int[][] shape = {{intermediate, hidden}, {intermediate, hidden}, {hidden, intermediate}};
        for (int m = 0; m < 3; m++) {
            int n = shape[m][0];
            int k = shape[m][1];
            float[] values = new float[n * k];
            for (int i = 0; i < values.length; i++) {
                values[i] = Numerics.fromFp8(codes[random.nextInt(codes.length)]);
            }
            t[m] = Tensor.of(arena, DType.FP8_E4M3, new long[] {n, k}, values); // exact: every value is a code
            scales[m] = new float[n];
            for (int r = 0; r < n; r++) {
                scales[m][r] = (float) ((0.5 + 1.5 * random.nextDouble()) / (rms * Math.sqrt(k)));
            }
        }
        return new ExpertWeights(t[0], t[1], t[2], new ChannelScales(scales[0], scales[1], scales[2]));
    }

    private static Tensor randomBf16(Arena arena, SplittableRandom random, int rows, int cols, double scale) {
        float[] v = new float[rows * cols];
        for (int i = 0; i < v.length; i++) {
            v[i] = (float) ((random.nextDouble() * 2 - 1) * scale * Math.sqrt(3));
        }
        return Tensor.of(arena, DType.BF16, new long[] {rows, cols}, v);
    }

    private interface Filler {
        void fill(MemorySegment seg);
    }

    private static void write(Path file, Arena arena, long bytes, Filler filler) throws IOException {
        MemorySegment seg = arena.allocate(bytes);
        filler.fill(seg);
        Files.write(file, seg.toArray(ValueLayout.JAVA_BYTE));
    }

    private static int run(List<String> command, Path dir) throws IOException, InterruptedException {
        Process p = new ProcessBuilder(command).redirectErrorStream(true)
                .redirectOutput(dir.resolve("log").toFile()).start();
        if (!p.waitFor(5, TimeUnit.MINUTES)) {
            p.destroyForcibly();
            return -1;
        }
        return p.exitValue();
    }
}
