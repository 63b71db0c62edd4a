package dev.moecluster.worker.cuda;

import dev.moecluster.core.tensor.DType;
import java.util.Arrays;
import java.util.List;

/**
 * The tile shapes compiled into the kernels' PTX: each block of a launch computes a {@code bm × bn}
 * tile with {@code threads} threads. The mma.sync shapes ({@code moe_ffn.ptx}, any GPU) mirror
 * {@code moe::Tile} in {@code moe_ffn.cu}, which the kernel emulation test checks; the Hopper shapes
 * ({@code moe_ffn_sm90a.ptx}, compute capability 9.0 only) mirror {@code moe90::Tile} in
 * {@code moe_ffn_sm90.cu}, which Sm90LayoutTest checks.
 */
enum TileConfig {
    /** 8 warps of 64 × 64, one block per multiprocessor; not chosen: slower than MEDIUM on an H200, timed by DeviceCheck. */
    LARGE(128, 256, 256, false, 4),
    /** 4 warps of 64 × 64, two blocks per multiprocessor: batches with more rows per expert than one small tile. */
    MEDIUM(128, 128, 128, false, 4),
    /** 4 warps of 32 × 64: few rows per expert (decode), where a 128-row tile would be mostly padding. */
    SMALL(64, 128, 128, false, 4),
    /** Hopper: a TMA producer warpgroup and two wgmma consumer warpgroups of 64 × 256, 4 stages. */
    HOPPER_LARGE(128, 256, 384, true, 4),
    /** Hopper: a TMA producer warpgroup and two wgmma consumer warpgroups of 64 × 128, 6 stages. */
    HOPPER_MEDIUM(128, 128, 384, true, 6),
    /** Hopper: a TMA producer warpgroup and one wgmma consumer warpgroup of 64 × 128, 8 stages (wgmma's m is 64). */
    HOPPER_SMALL(64, 128, 256, true, 8);

    /** k extent of one pipeline stage of the mma.sync kernels. */
    static final int BK = 32;
    /** cp.async pipeline depth of the mma.sync kernels. */
    static final int STAGES = 4;

    final int bm;
    final int bn;
    final int threads;
    /** Built for sm_90a (wgmma, TMA): loads only where the device reports compute capability 9.0. */
    final boolean hopper;
    /** Shared-memory stages of the pipeline. */
    final int stages;

    TileConfig(int bm, int bn, int threads, boolean hopper, int stages) {
        this.bm = bm;
        this.bn = bn;
        this.threads = threads;
        this.hopper = hopper;
        this.stages = stages;
    }

    /** The shapes of one PTX module: the mma.sync ones or the Hopper ones. */
    static List<TileConfig> of(boolean hopper) {
        return Arrays.stream(values()).filter(t -> t.hopper == hopper).toList();
    }

    /** {@code 128x256}, or {@code sm90_128x256} for a Hopper shape: the suffix of the kernels' names. */
    String suffix() {
        return (hopper ? "sm90_" : "") + bm + "x" + bn;
    }

    String gateUpKernel() {
        return "moe_gate_up_" + suffix();
    }

    String downKernel() {
        return "moe_down_" + suffix();
    }

    /** The gate/up kernel of this shape for weights in {@code weights} (bf16, or FP8 codes and scales). */
    String gateUpKernel(DType weights) {
        return weights == DType.FP8_E4M3 ? "moe_gate_up_fp8_" + fp8Suffix() : gateUpKernel();
    }

    /** The down kernel of this shape for weights in {@code weights}. */
    String downKernel(DType weights) {
        return weights == DType.FP8_E4M3 ? "moe_down_fp8_" + fp8Suffix() : downKernel();
    }

    private String fp8Suffix() {
        if (hopper) {
            throw new IllegalArgumentException("the Hopper tiles have no FP8 kernels (FP8 runs on the mma.sync tiles)");
        }
        return suffix();
    }

    /**
     * Dynamic shared memory a block needs: the pipeline's stages of A and B tiles in bf16; a Hopper
     * block adds two mbarriers per stage and 1024 bytes to align its stages to the 128-byte swizzle's atom.
     */
    int sharedMemoryBytes() {
        if (hopper) {
            return stages * (bm + bn) * Sm90Layout.BK * 2 + stages * 16 + Sm90Layout.SWIZZLE_ATOM_BYTES;
        }
        return STAGES * (bm + bn) * BK * 2;
    }

    /** Dynamic shared memory of the kernels for {@code weights}: an FP8 B tile takes one byte a weight. */
    int sharedMemoryBytes(DType weights) {
        if (weights == DType.FP8_E4M3) {
            fp8Suffix();
            return STAGES * (bm * 2 + bn) * BK;
        }
        return sharedMemoryBytes();
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

    /**
     * The tile for a batch whose largest expert has {@code maxRows} rows, among the Hopper shapes when
     * {@code hopper}. On Hopper the small shape serves up to 64 rows (wgmma's smallest m) and the
     * medium one the rest, a first guess until DeviceCheck has timed all three on a device.
     */
    static TileConfig forRows(int maxRows, boolean hopper) {
        if (!hopper) {
            return forRows(maxRows);
        }
        return maxRows <= HOPPER_SMALL.bm ? HOPPER_SMALL : HOPPER_MEDIUM;
    }

    /**
     * The tile for a launch over weights in {@code weights}: FP8 weights run on the mma.sync shapes on
     * every GPU (the Hopper kernels read bf16 only), with the same choice by rows.
     */
    static TileConfig forRows(int maxRows, boolean hopper, DType weights) {
        return forRows(maxRows, hopper && weights != DType.FP8_E4M3);
    }
}
