package dev.moecluster.worker.cuda;

import static org.assertj.core.api.Assertions.assertThat;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.moecluster.core.moe.ExpertWeights;
import dev.moecluster.core.tensor.DType;
import dev.moecluster.core.tensor.Numerics;
import dev.moecluster.core.tensor.Tensor;
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
 * several tiles and the mbarrier ring wraps many times.
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

    @ParameterizedTest(name = "{0} tiles, {1} copies")
    @CsvSource({"LARGE, deferred", "MEDIUM, deferred", "SMALL, deferred", "SMALL, eager",
            "HOPPER_LARGE, deferred", "HOPPER_MEDIUM, deferred", "HOPPER_SMALL, deferred", "HOPPER_LARGE, eager",
            "HOPPER_MEDIUM, eager", "HOPPER_SMALL, eager"})
    void kernelsComputeTheExpertFfnOfEveryExpertInTheBatch(TileConfig tile, String copies, @TempDir Path dir) throws Exception {
        int hidden = 136;          // k of gate/up: 4 full 32-wide slices and a partial one
        int intermediate = 200;    // n of gate/up is 400 (a partial 256-wide tile); k of down is 200
        int[] rows = {1, 70, 0, 130};
        SplittableRandom random = new SplittableRandom(tile.ordinal() * 31L + copies.length());
        try (Arena arena = Arena.ofShared()) { // the cpu backend's GEMM reads the weights from its pool
            List<ExpertWeights> experts = new ArrayList<>();
            for (int e = 0; e < rows.length; e++) {
                experts.add(new ExpertWeights(
                        randomBf16(arena, random, intermediate, hidden, 1 / Math.sqrt(hidden)),
                        randomBf16(arena, random, intermediate, hidden, 1 / Math.sqrt(hidden)),
                        randomBf16(arena, random, hidden, intermediate, 1 / Math.sqrt(intermediate))));
            }
            int total = 0;
            for (int r : rows) {
                total += r;
            }
            float[] x = new float[total * hidden];
            for (int i = 0; i < x.length; i++) {
                x[i] = Numerics.fromBf16(Numerics.toBf16((float) (random.nextDouble() * 4 - 2)));
            }

            LaunchPlan gateUp = LaunchPlan.gateUp(tile, rows, hidden, intermediate);
            LaunchPlan down = LaunchPlan.down(tile, rows, hidden, intermediate);
            long[] index = new long[rows.length];
            for (int e = 0; e < rows.length; e++) {
                index[e] = e; // the emulator swaps each index for the address of that expert's file
            }
            write(dir.resolve("slots_gate_up.bin"), arena, gateUp.slotBytes(), seg -> gateUp.writeSlots(seg, index));
            write(dir.resolve("slots_down.bin"), arena, down.slotBytes(), seg -> down.writeSlots(seg, index));
            write(dir.resolve("x.bin"), arena, 2L * x.length, seg -> bf16(seg, x.length / hidden, hidden).copyFrom(f32(x, x.length / hidden, hidden), 0));
            for (int e = 0; e < rows.length; e++) {
                ExpertWeights w = experts.get(e);
                write(dir.resolve("w_gate_up_" + e + ".bin"), arena, 4L * intermediate * hidden,
                        seg -> WeightLayout.writeGateUpRows(w, 0, WeightLayout.gateUpRows(w), seg));
                write(dir.resolve("w_down_" + e + ".bin"), arena, 2L * hidden * intermediate,
                        seg -> WeightLayout.writeDownRows(w, 0, WeightLayout.downRows(w), seg));
            }
            List<String> plan = new ArrayList<>(List.of(
                    "variant " + tile.suffix(),
                    "threads " + tile.threads,
                    "smem " + tile.sharedMemoryBytes(),
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
            assertThat(relativeError(got, expected)).isLessThan(1e-2);
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
