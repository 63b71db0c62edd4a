package dev.moecluster.worker.cuda;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.moecluster.core.tensor.DType;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import org.junit.jupiter.api.Test;

class LaunchPlanTest {
    private static final ValueLayout.OfLong LONG_LE = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfInt INT_LE = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    @Test
    void packsRowsExpertAfterExpertAndCountsTilesPerExpert() {
        // Llama 4 Scout's expert shape: gate/up is [2 * 8192, 5120].
        LaunchPlan p = LaunchPlan.gateUp(TileConfig.LARGE, new int[] {16, 256, 2048}, 5120, 8192);

        assertThat(p.n()).isEqualTo(16384);
        assertThat(p.k()).isEqualTo(5120);
        assertThat(p.rowStart()).containsExactly(0, 16, 272);
        assertThat(p.tilesN()).isEqualTo(64);
        assertThat(p.tilesM()).containsExactly(1, 2, 16);
        assertThat(p.tileStart()).containsExactly(0, 64, 192);
        assertThat(p.gridSize()).isEqualTo((1 + 2 + 16) * 64);
        assertThat(p.totalRows()).isEqualTo(2320);
        assertThat(p.paddedRows()).isEqualTo((1 + 2 + 16) * 128L);
    }

    @Test
    void downLaunchReducesOverTheIntermediateSize() {
        LaunchPlan p = LaunchPlan.down(TileConfig.SMALL, new int[] {100}, 5120, 8192);

        assertThat(p.n()).isEqualTo(5120);
        assertThat(p.k()).isEqualTo(8192);
        assertThat(p.tilesN()).isEqualTo(40);
        assertThat(p.tilesM()).containsExactly(2);
        assertThat(p.gridSize()).isEqualTo(80);
    }

    @Test
    void roundsPartialTilesUpAlongBothDimensions() {
        // n = 2 * 200 = 400 is 1 full and 1 partial 256-wide tile; 130 rows are 1 full and 1 partial tile.
        LaunchPlan p = LaunchPlan.gateUp(TileConfig.LARGE, new int[] {130}, 136, 200);

        assertThat(p.tilesN()).isEqualTo(2);
        assertThat(p.tilesM()).containsExactly(2);
        assertThat(p.gridSize()).isEqualTo(4);
        assertThat(p.paddedRows()).isEqualTo(256);
    }

    @Test
    void expertsWithoutRowsGetNoSlotButKeepTheirRowOffset() {
        LaunchPlan p = LaunchPlan.of(TileConfig.SMALL, new int[] {0, 5, 0, 0, 64, 65, 0}, 256, 64);

        assertThat(p.rowStart()).containsExactly(0, 0, 5, 5, 5, 69, 134);
        assertThat(p.slotExpert()).containsExactly(1, 4, 5);
        assertThat(p.tilesM()).containsExactly(1, 1, 2);
        assertThat(p.tileStart()).containsExactly(0, 2, 4);
        assertThat(p.gridSize()).isEqualTo(8);
        assertThat(p.slotBytes()).isEqualTo(3 * 24L);
    }

    @Test
    void anEmptyBatchLaunchesNothing() {
        LaunchPlan p = LaunchPlan.of(TileConfig.LARGE, new int[] {0, 0}, 256, 64);

        assertThat(p.slotCount()).isZero();
        assertThat(p.gridSize()).isZero();
    }

    @Test
    void everyTileOfEveryExpertIsComputedByExactlyOneBlock() {
        int[] rows = {1, 200, 0, 64, 65, 129, 3};
        for (TileConfig tile : TileConfig.values()) {
            LaunchPlan p = LaunchPlan.of(tile, rows, 520, 64);
            Set<List<Integer>> seen = new HashSet<>();
            for (int block = 0; block < p.gridSize(); block++) {
                LaunchPlan.TileCoordinate c = p.locate(block);
                assertThat(c.m0()).isLessThan(rows[c.expert()]);
                assertThat(c.n0()).isLessThan(p.n());
                assertThat(seen.add(List.of(c.expert(), c.m0(), c.n0()))).as("block %d duplicates a tile", block).isTrue();
            }
            int expected = 0;
            for (int r : rows) {
                expected += ((r + tile.bm - 1) / tile.bm) * ((520 + tile.bn - 1) / tile.bn);
            }
            assertThat(seen).hasSize(expected);
        }
    }

    @Test
    void consecutiveBlocksOfAnExpertShareAWeightTile() {
        // m-fastest order: blocks running together read the same B columns, which stay in L2.
        LaunchPlan p = LaunchPlan.of(TileConfig.LARGE, new int[] {300}, 1024, 64);

        assertThat(p.locate(0)).isEqualTo(new LaunchPlan.TileCoordinate(0, 0, 0));
        assertThat(p.locate(1)).isEqualTo(new LaunchPlan.TileCoordinate(0, 128, 0));
        assertThat(p.locate(2)).isEqualTo(new LaunchPlan.TileCoordinate(0, 256, 0));
        assertThat(p.locate(3)).isEqualTo(new LaunchPlan.TileCoordinate(0, 0, 256));
    }

    @Test
    void writesTheSlotTableTheKernelReads() {
        LaunchPlan p = LaunchPlan.of(TileConfig.SMALL, new int[] {70, 0, 3}, 256, 64);
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment slots = arena.allocate(p.slotBytes());
            p.writeSlots(slots, new long[] {0x7f0000001000L, 0xdeadL, 0x7f0000002000L});

            assertThat(slots.get(LONG_LE, 0)).isEqualTo(0x7f0000001000L);
            assertThat(slots.get(INT_LE, 8)).isZero();      // row_start
            assertThat(slots.get(INT_LE, 12)).isEqualTo(70); // rows
            assertThat(slots.get(INT_LE, 16)).isZero();      // tile_start
            assertThat(slots.get(INT_LE, 20)).isEqualTo(2);  // tiles_m
            assertThat(slots.get(LONG_LE, 24)).isEqualTo(0x7f0000002000L);
            assertThat(slots.get(INT_LE, 32)).isEqualTo(70);
            assertThat(slots.get(INT_LE, 36)).isEqualTo(3);
            assertThat(slots.get(INT_LE, 40)).isEqualTo(4);
            assertThat(slots.get(INT_LE, 44)).isEqualTo(1);
        }
    }

    @Test
    void refusesShapesTheKernelsCannotLoad() {
        assertThatThrownBy(() -> LaunchPlan.gateUp(TileConfig.LARGE, new int[] {1}, 100, 256))
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("multiples of 8")
                .hasMessageContaining("hidden 100");
        assertThatThrownBy(() -> LaunchPlan.down(TileConfig.LARGE, new int[] {1}, 128, 36))
                .hasMessageContaining("intermediate 36");
        assertThatThrownBy(() -> LaunchPlan.of(TileConfig.LARGE, new int[] {-1}, 128, 64))
                .hasMessageContaining("-1 rows");
    }

    @Test
    void choosesTheSmallTileOnlyWhenEveryExpertFitsOneSmallTile() {
        assertThat(TileConfig.forRows(1)).isEqualTo(TileConfig.SMALL);
        assertThat(TileConfig.forRows(64)).isEqualTo(TileConfig.SMALL);
        assertThat(TileConfig.forRows(65)).isEqualTo(TileConfig.MEDIUM);
        assertThat(TileConfig.forRows(2048)).isEqualTo(TileConfig.MEDIUM);
    }

    @Test
    void tileShapesMatchTheKernelsLaunchContract() {
        assertThat(TileConfig.LARGE.gateUpKernel()).isEqualTo("moe_gate_up_128x256");
        assertThat(TileConfig.SMALL.downKernel()).isEqualTo("moe_down_64x128");
        assertThat(TileConfig.LARGE.sharedMemoryBytes()).isEqualTo(4 * (128 + 256) * 32 * 2);
        assertThat(TileConfig.SMALL.sharedMemoryBytes()).isEqualTo(48 * 1024);
    }

    @Test
    void aBatchMixingWeightDtypesTakesOneLaunchPerDtypeThatTogetherCoverEveryRowOnce() {
        int[] rows = {3, 70, 0, 5, 130};
        boolean[] fp8 = {true, false, true, true, false};
        boolean[] bf16 = {false, true, false, false, true};
        LaunchPlan a = LaunchPlan.gateUp(TileConfig.MEDIUM, DType.BF16, rows, bf16, 136, 200);
        LaunchPlan b = LaunchPlan.gateUp(TileConfig.SMALL, DType.FP8_E4M3, rows, fp8, 136, 200);
        assertThat(a.rowStart()).isEqualTo(b.rowStart()).isEqualTo(new int[] {0, 3, 73, 73, 78});
        assertThat(a.slotExpert()).containsExactly(1, 4);
        assertThat(b.slotExpert()).containsExactly(0, 3); // expert 2 has no rows
        assertThat(a.totalRows()).isEqualTo(b.totalRows()).isEqualTo(208);
        int[] covered = new int[208];
        for (LaunchPlan p : List.of(a, b)) {
            for (int block = 0; block < p.gridSize(); block++) {
                LaunchPlan.TileCoordinate t = p.locate(block);
                if (t.n0() == 0) {
                    for (int r = t.m0(); r < Math.min(t.m0() + p.tile().bm, rows[t.expert()]); r++) {
                        covered[p.rowStart()[t.expert()] + r]++;
                    }
                }
            }
        }
        assertThat(covered).containsOnly(1);
        assertThat(b.toString()).contains("fp8");
        assertThat(a).isNotEqualTo(LaunchPlan.gateUp(TileConfig.MEDIUM, DType.FP8_E4M3, rows, bf16, 136, 200));
    }

    @Test
    void fp8WeightsRunOnTheMmaSyncTilesOnly() {
        assertThatThrownBy(() -> LaunchPlan.gateUp(TileConfig.HOPPER_SMALL, DType.FP8_E4M3, new int[] {1}, null, 128, 64))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("mma.sync");
        assertThatThrownBy(() -> LaunchPlan.of(TileConfig.SMALL, DType.F32, new int[] {1}, null, 128, 64))
                .hasMessageContaining("BF16 or FP8_E4M3");
        assertThatThrownBy(() -> LaunchPlan.of(TileConfig.SMALL, DType.BF16, new int[] {1, 2}, new boolean[] {true}, 128, 64))
                .hasMessageContaining("2 experts but 1 inclusion flags");
        // On Hopper bf16 experts take the wgmma tiles, FP8 experts the mma.sync ones.
        assertThat(TileConfig.forRows(16, true, DType.BF16)).isEqualTo(TileConfig.HOPPER_SMALL);
        assertThat(TileConfig.forRows(16, true, DType.FP8_E4M3)).isEqualTo(TileConfig.SMALL);
        assertThat(TileConfig.forRows(300, true, DType.FP8_E4M3)).isEqualTo(TileConfig.MEDIUM);
        assertThat(TileConfig.forRows(300, false, DType.BF16)).isEqualTo(TileConfig.MEDIUM);
    }

    @Test
    void fp8KernelsAreNamedPerTileAndHoldTheirWeightTilesAtOneByteAWeight() {
        assertThat(TileConfig.SMALL.gateUpKernel(DType.FP8_E4M3)).isEqualTo("moe_gate_up_fp8_64x128");
        assertThat(TileConfig.LARGE.downKernel(DType.FP8_E4M3)).isEqualTo("moe_down_fp8_128x256");
        assertThat(TileConfig.MEDIUM.gateUpKernel(DType.BF16)).isEqualTo("moe_gate_up_128x128");
        assertThat(TileConfig.SMALL.sharedMemoryBytes(DType.FP8_E4M3)).isEqualTo(4 * (64 * 2 + 128) * 32);
        assertThat(TileConfig.LARGE.sharedMemoryBytes(DType.BF16)).isEqualTo(TileConfig.LARGE.sharedMemoryBytes());
        assertThatThrownBy(() -> TileConfig.HOPPER_MEDIUM.gateUpKernel(DType.FP8_E4M3))
                .hasMessageContaining("no FP8 kernels");
    }
}
