package dev.moecluster.worker.cuda;

/**
 * The tile shapes compiled into {@code moe_ffn.ptx}: each block of a launch computes a {@code bm × bn}
 * tile with {@code threads} threads. The numbers mirror {@code moe::Tile} in {@code moe_ffn.cu}; the
 * kernel emulation test checks that they agree.
 */
enum TileConfig {
    /** 8 warps of 64 × 64, one block per multiprocessor; not chosen: slower than MEDIUM on an H200, timed by DeviceCheck. */
    LARGE(128, 256, 256),
    /** 4 warps of 64 × 64, two blocks per multiprocessor: batches with more rows per expert than one small tile. */
    MEDIUM(128, 128, 128),
    /** 4 warps of 32 × 64: few rows per expert (decode), where a 128-row tile would be mostly padding. */
    SMALL(64, 128, 128);

    /** k extent of one pipeline stage. */
    static final int BK = 32;
    /** cp.async pipeline depth. */
    static final int STAGES = 4;

    final int bm;
    final int bn;
    final int threads;

    TileConfig(int bm, int bn, int threads) {
        this.bm = bm;
        this.bn = bn;
        this.threads = threads;
    }

    /** {@code 128x256}: the suffix of the kernels' names. */
    String suffix() {
        return bm + "x" + bn;
    }

    String gateUpKernel() {
        return "moe_gate_up_" + suffix();
    }

    String downKernel() {
        return "moe_down_" + suffix();
    }

    /** Dynamic shared memory a block needs: the pipeline's stages of A and B tiles in bf16. */
    int sharedMemoryBytes() {
        return STAGES * (bm + bn) * BK * 2;
    }

    /**
     * The tile for a batch whose largest expert has {@code maxRows} rows. Up to one small tile the
     * small shape wastes less work on padding rows; past it MEDIUM was the fastest of the three on an
     * H200 at 256 and 2048 rows per expert (331 and 333 TFLOP/s against LARGE's 266 and 290: two
     * blocks per multiprocessor hide the pipeline's latency better; bench/RESULTS.md, "Expert FFN on a GPU").
     */
    static TileConfig forRows(int maxRows) {
        return maxRows <= SMALL.bm ? SMALL : MEDIUM;
    }
}
