package dev.moecluster.worker.cuda;

import java.util.ArrayList;
import java.util.List;

/**
 * The address arithmetic of the Hopper kernels ({@code moe_ffn_sm90.cu}) in Java, so it is tested
 * without a GPU: wgmma shared-memory descriptors, the 128-byte swizzle TMA writes and wgmma reads,
 * the TMA boxes a tile loads, and the order a persistent block walks a launch's tiles.
 */
final class Sm90Layout {
    /** k extent of one pipeline stage: 64 bf16, one 128-byte swizzled row. */
    static final int BK = 64;
    /** Bytes of one tile row in shared memory. */
    static final int ROW_BYTES = BK * 2;
    /** The 128-byte swizzle repeats every 8 rows of 128 bytes; stages start on this alignment. */
    static final int SWIZZLE_ATOM_BYTES = 8 * ROW_BYTES;
    /** Rows of one TMA box of the weights; a 256-row weight tile takes two boxes. */
    static final int B_BOX_ROWS = 128;
    /** Columns (n) of one wgmma instruction, m64n128k16. */
    static final int WGMMA_N = 128;
    /** Swizzle mode bits 62-63 of a descriptor: 1 is the 128-byte swizzle. */
    static final int SWIZZLE_128B_MODE = 1;

    private Sm90Layout() {}

    /**
     * The wgmma matrix descriptor of a K-major bf16 tile at shared-memory address {@code smemAddress}
     * in the 128-byte swizzle: start address {@code >> 4} in bits 0-13, leading byte offset (unused
     * by this layout, 16 bytes) in 16-29, stride byte offset (1024 bytes between 8-row groups) in
     * 32-45, base offset 0 in 49-51, swizzle mode in 62-63.
     */
    static long descriptor(int smemAddress) {
        if (smemAddress < 0 || smemAddress >= 1 << 18 || smemAddress % 16 != 0) {
            throw new IllegalArgumentException("shared-memory address " + smemAddress + " is not a 16-byte aligned address below 256 KiB");
        }
        return ((long) (smemAddress >> 4) & 0x3FFF)
                | (1L << 16)
                | ((long) (SWIZZLE_ATOM_BYTES >> 4) << 32)
                | ((long) SWIZZLE_128B_MODE << 62);
    }

    /** The descriptor of k16 slice {@code ks} of a stage: 32 bytes further along the (pre-swizzle) row. */
    static long advanceK(long descriptor, int ks) {
        if (ks < 0 || ks >= BK / 16) {
            throw new IllegalArgumentException("k16 slice " + ks + " of a " + BK + "-wide stage");
        }
        return descriptor + ((ks * 16 * 2) >> 4);
    }

    /**
     * The 128-byte swizzle (CUTLASS's {@code Swizzle<3, 4, 3>}): bits 4-6 of a shared-memory byte
     * address, its 16-byte chunk within a 128-byte row, are XOR-ed with bits 7-9, the row within an
     * 8-row atom. TMA applies it when writing a box, wgmma when reading through a descriptor.
     */
    static int swizzle128(int address) {
        return address ^ (((address >> 7) & 7) << 4);
    }

    /** Where TMA puts element {@code (row, k)} of a box whose swizzled destination starts at {@code base}. */
    static int tmaDestination(int base, int row, int k) {
        return swizzle128(base + row * ROW_BYTES + k * 2);
    }

    /** A TMA box origin: {@code c0} along k (the inner, contiguous dimension), {@code c1} along rows. */
    record Box(int c0, int c1) {}

    /** The A box of k-slice {@code kt} of a tile: {@code {BK, bm}} elements at the tile's first row in the packed batch. */
    static Box aBox(LaunchPlan plan, LaunchPlan.TileCoordinate tile, int kt) {
        return new Box(kt * BK, plan.rowStart()[tile.expert()] + tile.m0());
    }

    /** The B boxes of k-slice {@code kt} of a tile: {@code bn / 128} boxes of {@code {BK, 128}} from the tile's first column. */
    static List<Box> bBoxes(LaunchPlan plan, LaunchPlan.TileCoordinate tile, int kt) {
        List<Box> boxes = new ArrayList<>();
        for (int h = 0; h < plan.tile().bn / B_BOX_ROWS; h++) {
            boxes.add(new Box(kt * BK, tile.n0() + h * B_BOX_ROWS));
        }
        return boxes;
    }

    /** Blocks of a persistent launch: one per multiprocessor, fewer when the launch has fewer tiles. */
    static int persistentGrid(int tiles, int multiprocessors) {
        return Math.max(0, Math.min(tiles, multiprocessors));
    }

    /** The tiles block {@code block} of a persistent launch computes, in its order: {@code block, block + grid, ...}. */
    static List<Integer> tilesOfBlock(int block, int grid, int tiles) {
        List<Integer> out = new ArrayList<>();
        for (int t = block; t < tiles; t += grid) {
            out.add(t);
        }
        return out;
    }

    /**
     * The accumulator element thread {@code thread} (0-127) of a consumer warpgroup holds in register
     * {@code index} (0-63) of an m64n128 wgmma: {@code {row, column}} of the 64 × 128 result, per the
     * PTX ISA's wgmma D fragment layout.
     */
    static int[] accumulatorElement(int thread, int index) {
        int row = 16 * (thread / 32) + (thread % 32) / 4 + 8 * ((index % 4) / 2);
        int column = 8 * (index / 4) + 2 * (thread % 4) + index % 2;
        return new int[] {row, column};
    }
}
