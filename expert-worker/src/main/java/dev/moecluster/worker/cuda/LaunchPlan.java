package dev.moecluster.worker.cuda;

import static java.util.Objects.requireNonNull;

import dev.moecluster.core.tensor.DType;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.Arrays;

/**
 * How one grouped launch covers a batch whose rows are grouped by expert: where each expert's rows
 * start, and which block computes which tile of which expert. Pure arithmetic; the kernel side is
 * {@code locate()} in {@code moe_ffn.cu}, which reads the slot table {@link #writeSlots} writes.
 *
 * <p>Rows stay packed (expert after expert, no padding in memory); a tile that reaches past an
 * expert's last row is padded by predication inside the kernel. Experts with no rows get no slot, nor
 * do experts a launch leaves to another (a batch whose experts differ in weight dtype takes one launch
 * per dtype, each writing its own experts' rows).
 *
 * @param tile the tile shape of the launch
 * @param weights the experts' weights on the device: BF16, or FP8_E4M3 (codes and scales: the fp8 kernels)
 * @param n columns of the product (output width)
 * @param k the reduction width
 * @param rows rows of each expert of the group, in group order
 * @param rowStart first row of each expert in the packed batch
 * @param slotExpert for each slot, the group index of its expert
 * @param tileStart for each slot, the first block index of its expert
 * @param tilesM for each slot, the tiles along the rows of its expert ({@code ceil(rows / bm)})
 * @param tilesN tiles along the columns ({@code ceil(n / bn)}), the same for every expert
 * @param gridSize blocks of the launch
 */
record LaunchPlan(TileConfig tile, DType weights, int n, int k, int[] rows, int[] rowStart, int[] slotExpert,
        int[] tileStart, int[] tilesM, int tilesN, int gridSize) {

    /** Bytes of one {@code moe::ExpertSlot}: u64 weights, i32 row_start, rows, tile_start, tiles_m. */
    static final int SLOT_BYTES = 24;

    private static final ValueLayout.OfLong LONG_LE = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfInt INT_LE = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    LaunchPlan {
        requireNonNull(tile, "tile is null");
        requireNonNull(weights, "weights is null");
        if (weights != DType.BF16 && weights != DType.FP8_E4M3) {
            throw new IllegalArgumentException("device weights are BF16 or FP8_E4M3, not " + weights);
        }
        if (weights == DType.FP8_E4M3 && tile.hopper) {
            throw new IllegalArgumentException("FP8 weights run on the mma.sync tiles, not " + tile.suffix());
        }
        rows = rows.clone();
        rowStart = rowStart.clone();
        slotExpert = slotExpert.clone();
        tileStart = tileStart.clone();
        tilesM = tilesM.clone();
    }

    /** The gate/up launch of an expert FFN: {@code [rows, 2I] = x · gate_upᵀ}, reducing over the hidden size. */
    static LaunchPlan gateUp(TileConfig tile, int[] rowsPerExpert, int hidden, int intermediate) {
        return gateUp(tile, DType.BF16, rowsPerExpert, null, hidden, intermediate);
    }

    /**
     * The gate/up launch over the experts with {@code included[e]} (all when null), whose weights are
     * {@code weights} on the device; the others' rows keep their place in the batch.
     */
    static LaunchPlan gateUp(TileConfig tile, DType weights, int[] rowsPerExpert, boolean[] included, int hidden,
            int intermediate) {
        checkShape(hidden, intermediate);
        return of(tile, weights, rowsPerExpert, included, Math.multiplyExact(2, intermediate), hidden);
    }

    /** The down launch of an expert FFN: {@code [rows, H] = act · downᵀ}, reducing over the intermediate size. */
    static LaunchPlan down(TileConfig tile, int[] rowsPerExpert, int hidden, int intermediate) {
        return down(tile, DType.BF16, rowsPerExpert, null, hidden, intermediate);
    }

    /** The down launch over the experts with {@code included[e]} (all when null), as {@link #gateUp(TileConfig, DType, int[], boolean[], int, int)}. */
    static LaunchPlan down(TileConfig tile, DType weights, int[] rowsPerExpert, boolean[] included, int hidden,
            int intermediate) {
        checkShape(hidden, intermediate);
        return of(tile, weights, rowsPerExpert, included, hidden, intermediate);
    }

    /**
     * The kernels move 16-byte chunks of bf16 rows and pair gate/up columns in groups of 8, so both
     * sizes must be multiples of 8 (true of every published MoE model).
     */
    static void checkShape(int hidden, int intermediate) {
        if (hidden <= 0 || intermediate <= 0 || hidden % 8 != 0 || intermediate % 8 != 0) {
            throw new IllegalArgumentException("the cuda backend needs hidden and intermediate sizes that are positive"
                    + " multiples of 8, got hidden " + hidden + ", intermediate " + intermediate);
        }
    }

    /** A launch computing {@code C[rows, n] = A[rows, k] · B[n, k]ᵀ} for each expert of the group, bf16 weights. */
    static LaunchPlan of(TileConfig tile, int[] rowsPerExpert, int n, int k) {
        return of(tile, DType.BF16, rowsPerExpert, null, n, k);
    }

    /** A launch computing {@code C = A · Bᵀ} for the experts with {@code included[e]} (all when null). */
    static LaunchPlan of(TileConfig tile, DType weights, int[] rowsPerExpert, boolean[] included, int n, int k) {
        requireNonNull(tile, "tile is null");
        if (n <= 0 || k <= 0) {
            throw new IllegalArgumentException("n and k must be positive, got n " + n + ", k " + k);
        }
        int experts = rowsPerExpert.length;
        if (included != null && included.length != experts) {
            throw new IllegalArgumentException(experts + " experts but " + included.length + " inclusion flags");
        }
        int[] rowStart = new int[experts];
        int used = 0;
        int total = 0;
        for (int e = 0; e < experts; e++) {
            if (rowsPerExpert[e] < 0) {
                throw new IllegalArgumentException("expert " + e + " has " + rowsPerExpert[e] + " rows");
            }
            rowStart[e] = total;
            total = Math.addExact(total, rowsPerExpert[e]);
            if (rowsPerExpert[e] > 0 && (included == null || included[e])) {
                used++;
            }
        }
        int tilesN = ceilDiv(n, tile.bn);
        int[] slotExpert = new int[used];
        int[] tileStart = new int[used];
        int[] tilesM = new int[used];
        int grid = 0;
        int s = 0;
        for (int e = 0; e < experts; e++) {
            if (rowsPerExpert[e] == 0 || (included != null && !included[e])) {
                continue;
            }
            slotExpert[s] = e;
            tileStart[s] = grid;
            tilesM[s] = ceilDiv(rowsPerExpert[e], tile.bm);
            grid = Math.addExact(grid, Math.multiplyExact(tilesM[s], tilesN));
            s++;
        }
        return new LaunchPlan(tile, weights, n, k, rowsPerExpert, rowStart, slotExpert, tileStart, tilesM, tilesN, grid);
    }

    private static int ceilDiv(int a, int b) {
        return (a + b - 1) / b;
    }

    int slotCount() {
        return slotExpert.length;
    }

    /** Rows of the whole batch, those of experts left to another launch included. */
    int totalRows() {
        return Arrays.stream(rows).sum();
    }

    /** Rows the tensor cores process, padding included: the cost side of the tile choice. */
    long paddedRows() {
        long padded = 0;
        for (int m : tilesM) {
            padded += (long) m * tile.bm;
        }
        return padded;
    }

    /** Bytes of the slot table. */
    long slotBytes() {
        return (long) slotCount() * SLOT_BYTES;
    }

    /**
     * Writes the slot table the kernel reads; {@code weightAddress[e]} is the device address of
     * expert {@code e}'s {@code [n, k]} weight matrix (FP8: its codes, which its scales follow).
     */
    void writeSlots(MemorySegment dst, long[] weightAddress) {
        if (weightAddress.length != rows.length) {
            throw new IllegalArgumentException("need one weight address per expert: " + rows.length + ", got " + weightAddress.length);
        }
        for (int s = 0; s < slotCount(); s++) {
            int e = slotExpert[s];
            long at = (long) s * SLOT_BYTES;
            dst.set(LONG_LE, at, weightAddress[e]);
            dst.set(INT_LE, at + 8, rowStart[e]);
            dst.set(INT_LE, at + 12, rows[e]);
            dst.set(INT_LE, at + 16, tileStart[s]);
            dst.set(INT_LE, at + 20, tilesM[s]);
        }
    }

    /** The expert, row tile and column tile block {@code block} computes: what the kernel's locate() finds. */
    TileCoordinate locate(int block) {
        if (block < 0 || block >= gridSize) {
            throw new IndexOutOfBoundsException("block " + block + " of a grid of " + gridSize);
        }
        int s = 0;
        while (s + 1 < slotCount() && block >= tileStart[s + 1]) {
            s++;
        }
        int t = block - tileStart[s];
        return new TileCoordinate(slotExpert[s], (t % tilesM[s]) * tile.bm, (t / tilesM[s]) * tile.bn);
    }

    /** One block's work: expert {@code expert}'s rows from {@code m0} and columns from {@code n0}. */
    record TileCoordinate(int expert, int m0, int n0) {}

    @Override
    public boolean equals(Object o) {
        return o instanceof LaunchPlan p && tile == p.tile && weights == p.weights && n == p.n && k == p.k && tilesN == p.tilesN
                && gridSize == p.gridSize && Arrays.equals(rows, p.rows) && Arrays.equals(rowStart, p.rowStart)
                && Arrays.equals(slotExpert, p.slotExpert) && Arrays.equals(tileStart, p.tileStart)
                && Arrays.equals(tilesM, p.tilesM);
    }

    @Override
    public int hashCode() {
        return 31 * Arrays.hashCode(rows) + gridSize;
    }

    @Override
    public String toString() {
        return "LaunchPlan[" + tile.suffix() + (weights == DType.FP8_E4M3 ? " fp8" : "") + " n=" + n + " k=" + k
                + " rows=" + Arrays.toString(rows)
                + " grid=" + gridSize + "]";
    }
}
