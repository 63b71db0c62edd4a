package dev.moecluster.worker.cuda;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The Hopper kernels' address arithmetic against its definitions in the PTX ISA and the CUDA driver
 * API: wgmma descriptors (bit fields, and the kernel's own values from moe_ffn_sm90.cu), the 128-byte
 * swizzle, that a descriptor advanced along k reads what TMA wrote, the TMA boxes of a tile, the
 * persistent schedule, the accumulator layout the SwiGLU epilogue pairs, and the tensor-map limits.
 */
class Sm90LayoutTest {

    private static long field(long descriptor, int from, int bits) {
        return (descriptor >>> from) & ((1L << bits) - 1);
    }

    @Test
    void descriptorFieldsFollowThePtxIsaMatrixDescriptorFormat() {
        for (int address : new int[] {0, 1024, 8192, 17408, 195584}) {
            long d = Sm90Layout.descriptor(address);
            assertThat(field(d, 0, 14) << 4).as("start address").isEqualTo(address);
            assertThat(field(d, 16, 14)).as("leading byte offset >> 4 (unused by K-major 128B swizzle)").isEqualTo(1);
            assertThat(field(d, 32, 14) << 4).as("stride byte offset: 8 rows of 128 bytes").isEqualTo(1024);
            assertThat(field(d, 49, 3)).as("base offset").isZero();
            assertThat(field(d, 62, 2)).as("swizzle mode 1 = 128-byte").isEqualTo(1);
            long known = (0x3FFFL) | (0x3FFFL << 16) | (0x3FFFL << 32) | (7L << 49) | (3L << 62);
            assertThat(d & ~known).as("reserved bits").isZero();
        }
        assertThat(field(Sm90Layout.advanceK(Sm90Layout.descriptor(2048), 3), 0, 14) << 4).isEqualTo(2048 + 3 * 32);
        assertThatThrownBy(() -> Sm90Layout.descriptor(8)).isInstanceOf(IllegalArgumentException.class);
        assertThatThrownBy(() -> Sm90Layout.descriptor(1 << 18)).isInstanceOf(IllegalArgumentException.class);
        assertThatThrownBy(() -> Sm90Layout.advanceK(0, 4)).isInstanceOf(IllegalArgumentException.class);
    }

    @Test
    void theKernelComputesTheSameDescriptorsAsThisMirror(@TempDir Path dir) throws Exception {
        assumeTrue(new ProcessBuilder("bash", "-c", "command -v g++").start().waitFor() == 0, "g++ is not installed");
        Path emulator = dir.resolve("moe_emulator_sm90");
        Process cc = new ProcessBuilder("g++", "-std=c++17", "-O1", "-w", "-o", emulator.toString(),
                "src/test/cuda/moe_emulator_sm90.cpp").redirectErrorStream(true).start();
        String log = new String(cc.getInputStream().readAllBytes());
        assertThat(cc.waitFor(5, TimeUnit.MINUTES)).isTrue();
        assertThat(cc.exitValue()).as("g++: %s", log).isZero();
        Process p = new ProcessBuilder(emulator.toString(), "descriptors").redirectErrorStream(true).start();
        List<String> lines = new String(p.getInputStream().readAllBytes()).lines().toList();
        assertThat(p.waitFor(1, TimeUnit.MINUTES)).isTrue();

        assertThat(lines).hasSize(6 * 4);
        for (String line : lines) {
            String[] f = line.split(" ");
            int address = Integer.parseInt(f[0]);
            int ks = Integer.parseInt(f[1]);
            assertThat(Long.parseUnsignedLong(f[2], 16)).as("descriptor of %d, k16 slice %d", address, ks)
                    .isEqualTo(Sm90Layout.advanceK(Sm90Layout.descriptor(address), ks));
        }
    }

    @Test
    void swizzleXorsTheChunkWithTheRowWithinEachAtom() {
        for (int base = 0; base < 4096; base += 1024) {
            Set<Integer> seen = new HashSet<>();
            for (int a = base; a < base + 1024; a++) {
                int s = Sm90Layout.swizzle128(a);
                int row = (a >> 7) & 7;
                int chunk = (a >> 4) & 7;
                assertThat(s & ~0x70).isEqualTo(a & ~0x70);
                assertThat((s >> 4) & 7).isEqualTo(chunk ^ row);
                seen.add(s);
            }
            assertThat(seen).as("a permutation of the atom").hasSize(1024).allMatch(s -> s >= 0 && s < 4096);
        }
        assertThat(Sm90Layout.swizzle128(0x50)).as("row 0 is not moved").isEqualTo(0x50);
        assertThat(Sm90Layout.swizzle128(3 * 128 + 16)).isEqualTo(3 * 128 + (1 ^ 3) * 16);
    }

    /**
     * TMA writes a 64-row box with the swizzle; wgmma reads an m64 x k16 operand through a descriptor
     * whose start moved 32 bytes per k16 slice, in the ISA's canonical K-major layout, the swizzle then
     * applied to the full address. Every element must come back from where TMA put it.
     */
    @Test
    void descriptorAdvanceReadsWhatTmaWrote() {
        int base = 3 * 1024;
        short[] smem = new short[(base + 64 * Sm90Layout.ROW_BYTES) / 2];
        for (int row = 0; row < 64; row++) {
            for (int k = 0; k < Sm90Layout.BK; k++) {
                smem[Sm90Layout.tmaDestination(base, row, k) / 2] = (short) (row * 100 + k);
            }
        }
        for (int ks = 0; ks < Sm90Layout.BK / 16; ks++) {
            long d = Sm90Layout.advanceK(Sm90Layout.descriptor(base), ks);
            int start = (int) (field(d, 0, 14) << 4);
            int sbo = (int) (field(d, 32, 14) << 4);
            for (int i = 0; i < 64; i++) {
                for (int k = 0; k < 16; k++) {
                    int pre = start + (i / 8) * sbo + (i % 8) * Sm90Layout.ROW_BYTES + k * 2;
                    assertThat(smem[Sm90Layout.swizzle128(pre) / 2]).as("row %d, k %d", i, ks * 16 + k)
                            .isEqualTo((short) (i * 100 + ks * 16 + k));
                }
            }
        }
    }

    @Test
    void tmaBoxesCoverEachTileFromTheExpertsFirstRowInThePackedBatch() {
        LaunchPlan plan = LaunchPlan.of(TileConfig.HOPPER_LARGE, new int[] {1, 300, 0, 130}, 400, 136);
        for (int t = 0; t < plan.gridSize(); t++) {
            LaunchPlan.TileCoordinate c = plan.locate(t);
            for (int kt = 0; kt < 3; kt++) {
                assertThat(Sm90Layout.aBox(plan, c, kt)).isEqualTo(new Sm90Layout.Box(kt * 64, plan.rowStart()[c.expert()] + c.m0()));
                assertThat(Sm90Layout.bBoxes(plan, c, kt)).containsExactly(
                        new Sm90Layout.Box(kt * 64, c.n0()), new Sm90Layout.Box(kt * 64, c.n0() + 128));
            }
        }
        LaunchPlan.TileCoordinate fourth = plan.locate(3); // expert 1 (after expert 0's 2 tiles), second row tile
        assertThat(fourth).isEqualTo(new LaunchPlan.TileCoordinate(1, 128, 0));
        assertThat(Sm90Layout.aBox(plan, fourth, 0)).isEqualTo(new Sm90Layout.Box(0, 1 + 128));
        LaunchPlan medium = LaunchPlan.of(TileConfig.HOPPER_MEDIUM, new int[] {5}, 400, 136);
        assertThat(Sm90Layout.bBoxes(medium, medium.locate(3), 1)).containsExactly(new Sm90Layout.Box(64, 384));
    }

    @Test
    void persistentBlocksVisitEveryTileOnceInRisingOrder() {
        LaunchPlan plan = LaunchPlan.of(TileConfig.HOPPER_MEDIUM, new int[] {1, 300, 0, 130, 64}, 400, 136);
        int grid = Sm90Layout.persistentGrid(plan.gridSize(), 7);
        assertThat(grid).isEqualTo(7);
        assertThat(Sm90Layout.persistentGrid(5, 132)).isEqualTo(5);
        assertThat(Sm90Layout.persistentGrid(0, 132)).isZero();
        List<Integer> all = new ArrayList<>();
        for (int b = 0; b < grid; b++) {
            final int block = b;
            List<Integer> mine = Sm90Layout.tilesOfBlock(b, grid, plan.gridSize());
            assertThat(mine).isSorted().allMatch(t -> t % grid == block);
            assertThat(mine.getFirst()).isEqualTo(b);
            all.addAll(mine);
        }
        assertThat(all).hasSize(plan.gridSize()).doesNotHaveDuplicates();
        // Within an expert tiles are m-fastest: the blocks running at one time share weight tiles.
        assertThat(plan.locate(3)).isEqualTo(new LaunchPlan.TileCoordinate(0, 0, 384));
        assertThat(plan.locate(4)).isEqualTo(new LaunchPlan.TileCoordinate(1, 0, 0));
        assertThat(plan.locate(5)).isEqualTo(new LaunchPlan.TileCoordinate(1, 128, 0));
        assertThat(plan.locate(6)).isEqualTo(new LaunchPlan.TileCoordinate(1, 256, 0));
        assertThat(plan.locate(7)).isEqualTo(new LaunchPlan.TileCoordinate(1, 0, 128));
    }

    @Test
    void accumulatorRegistersCoverTheTileAndPairGateWithUpColumns() {
        Set<Integer> cells = new HashSet<>();
        for (int thread = 0; thread < 128; thread++) {
            for (int index = 0; index < 64; index++) {
                int[] rc = Sm90Layout.accumulatorElement(thread, index);
                cells.add(rc[0] * 128 + rc[1]);
            }
            // The epilogue multiplies silu(register 8p + 2h + c) by register 8p + 4 + 2h + c.
            for (int p = 0; p < 8; p++) {
                for (int hc = 0; hc < 4; hc++) {
                    int[] gate = Sm90Layout.accumulatorElement(thread, 8 * p + hc);
                    int[] up = Sm90Layout.accumulatorElement(thread, 8 * p + 4 + hc);
                    assertThat(up[0]).isEqualTo(gate[0]);
                    assertThat(up[1]).isEqualTo(gate[1] + WeightLayout.INTERLEAVE);
                    assertThat(gate[1] % (2 * WeightLayout.INTERLEAVE)).as("a gate column of the interleave").isLessThan(WeightLayout.INTERLEAVE);
                }
            }
        }
        assertThat(cells).hasSize(64 * 128);
    }

    @Test
    void hopperTilesFitHopperSharedMemoryAndAreChosenByRows() {
        for (TileConfig t : TileConfig.of(true)) {
            assertThat(t.sharedMemoryBytes()).as(t.suffix()).isLessThanOrEqualTo(227 * 1024);
            assertThat(t.threads).isEqualTo(128 * (t.bm / 64 + 1));
            assertThat(t.suffix()).startsWith("sm90_");
        }
        assertThat(TileConfig.HOPPER_MEDIUM.sharedMemoryBytes()).isEqualTo(6 * 256 * 128 + 6 * 16 + 1024);
        assertThat(TileConfig.of(false)).containsExactly(TileConfig.LARGE, TileConfig.MEDIUM, TileConfig.SMALL);
        assertThat(TileConfig.forRows(16, true)).isEqualTo(TileConfig.HOPPER_SMALL);
        assertThat(TileConfig.forRows(64, true)).isEqualTo(TileConfig.HOPPER_SMALL);
        assertThat(TileConfig.forRows(65, true)).isEqualTo(TileConfig.HOPPER_MEDIUM);
        assertThat(TileConfig.forRows(2048, false)).isEqualTo(TileConfig.MEDIUM);
    }

    @Test
    void tensorMapShapesOutsideWhatTmaTakesAreRejectedBeforeTheDriver() {
        assertThat(new TensorMaps.Bf16Matrix(0x1000, 300, 136, 128).boxCols()).isEqualTo(64);
        assertThatThrownBy(() -> new TensorMaps.Bf16Matrix(0x1008, 300, 136, 128)).hasMessageContaining("16-byte aligned");
        assertThatThrownBy(() -> new TensorMaps.Bf16Matrix(0x1000, 300, 132, 128)).hasMessageContaining("multiple of 16 bytes");
        assertThatThrownBy(() -> new TensorMaps.Bf16Matrix(0x1000, 300, 136, 512)).hasMessageContaining("1 to 256 rows");
        assertThatThrownBy(() -> new TensorMaps.Bf16Matrix(0x1000, 0, 136, 128)).isInstanceOf(IllegalArgumentException.class);
    }

    @Test
    void withoutTheDriverEncodingSaysWhatIsMissing() {
        assumeTrue(java.nio.file.Files.notExists(Path.of("/usr/lib/x86_64-linux-gnu/libcuda.so.1"))
                && java.nio.file.Files.notExists(Path.of("/usr/lib64/libcuda.so.1")), "this machine has an NVIDIA driver");
        TensorMaps.Bf16Matrix m = new TensorMaps.Bf16Matrix(0x1000, 300, 136, 128);
        assertThatThrownBy(() -> TensorMaps.encode(m)).isInstanceOf(CudaFailure.class).hasMessageContaining("libcuda.so.1");
        assertThatThrownBy(() -> TensorMaps.encode(m)).as("and again, not a class-initialisation error")
                .isInstanceOf(CudaFailure.class).hasMessageContaining("libcuda.so.1");
    }
}
