package dev.moecluster.worker.cuda;

import dev.moecluster.core.moe.ExpertWeights;
import dev.moecluster.core.tensor.DType;
import dev.moecluster.core.tensor.Numerics;
import dev.moecluster.core.tensor.Tensor;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;

/**
 * The device layout of an expert's weights: bf16 whatever the checkpoint's dtype, except FP8 experts,
 * which stay e4m3 codes with one f32 scale per row. {@code gate} and {@code up} become one {@code [2I, H]}
 * matrix, 8 rows of gate then the same 8 rows of up, so that one GEMM computes both and a gate column
 * and its up column end in the same thread's registers (see {@code moe_ffn.cu}); {@code down} keeps its
 * {@code [H, I]} Linear layout. An FP8 matrix is its rows of codes, each padded to a multiple of 16 codes
 * and permuted within every 16 so that one 32-bit load gives a thread its tensor-core fragment
 * ({@link #FP8_ORDER}), followed by its rows' scales. Writers produce a range of rows, so an upload can
 * stream a matrix through a small pinned buffer.
 */
final class WeightLayout {
    /** Rows of gate (then of up) per interleave group; the kernel's n8 fragment width. */
    static final int INTERLEAVE = 8;

    /**
     * Which k of a group of 16 each byte of an FP8 row holds: thread q of a quad reads bytes 4q..4q+3,
     * which are the k of its mma.sync B fragment, {@code 2q, 2q+1, 2q+8, 2q+9}.
     */
    static final int[] FP8_ORDER = {0, 1, 8, 9, 2, 3, 10, 11, 4, 5, 12, 13, 6, 7, 14, 15};

    private static final ValueLayout.OfShort SHORT_LE = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfLong LONG_LE = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfFloat FLOAT_LE = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    private WeightLayout() {}

    /** The dtype an expert stored in {@code stored} has on the device: FP8 stays FP8, everything else is bf16. */
    static DType deviceDtype(DType stored) {
        return stored == DType.FP8_E4M3 ? DType.FP8_E4M3 : DType.BF16;
    }

    /** Rows of the interleaved gate/up matrix: {@code 2 × intermediate}. */
    static int gateUpRows(ExpertWeights w) {
        return 2 * w.intermediateSize();
    }

    /** Rows of the down matrix: {@code hidden}. */
    static int downRows(ExpertWeights w) {
        return w.hiddenSize();
    }

    /** Bytes of one device row of {@code k} weights: {@code 2k} in bf16, {@code k} rounded up to 16 in FP8. */
    static long rowBytes(DType device, int k) {
        return device == DType.FP8_E4M3 ? (k + 15L) & ~15L : 2L * k;
    }

    /** Device bytes of the gate/up matrix, FP8 scales included. */
    static long gateUpBytes(ExpertWeights w) {
        return matrixBytes(deviceDtype(w.dtype()), gateUpRows(w), w.hiddenSize());
    }

    /** Device bytes of the down matrix, FP8 scales included. */
    static long downBytes(ExpertWeights w) {
        return matrixBytes(deviceDtype(w.dtype()), downRows(w), w.intermediateSize());
    }

    private static long matrixBytes(DType device, int rows, int k) {
        long bytes = rows * rowBytes(device, k);
        return device == DType.FP8_E4M3 ? bytes + (long) Float.BYTES * rows : bytes;
    }

    /**
     * Writes rows {@code [first, first + count)} of the interleaved gate/up matrix to {@code dst} from
     * offset 0, in the device dtype: row {@code r} is gate row {@code 8·(r/16) + r%8} when
     * {@code r%16 < 8}, else the up row of that index.
     */
    static void writeGateUpRows(ExpertWeights w, int first, int count, MemorySegment dst) {
        checkRange(first, count, gateUpRows(w));
        int h = w.hiddenSize();
        long rowBytes = rowBytes(deviceDtype(w.dtype()), h);
        for (int i = 0; i < count; i++) {
            int r = first + i;
            copyRow(gateUpSource(w, r), gateUpSourceRow(r), h, dst, i * rowBytes);
        }
    }

    /** Writes rows {@code [first, first + count)} of the down matrix to {@code dst} from offset 0, in the device dtype. */
    static void writeDownRows(ExpertWeights w, int first, int count, MemorySegment dst) {
        checkRange(first, count, downRows(w));
        int inter = w.intermediateSize();
        long rowBytes = rowBytes(deviceDtype(w.dtype()), inter);
        for (int i = 0; i < count; i++) {
            copyRow(w.down(), first + i, inter, dst, i * rowBytes);
        }
    }

    /**
     * Writes the scales of FP8 gate/up rows {@code [first, first + count)}, in the interleaved row order,
     * as little-endian f32 from {@code dst}'s offset 0; they follow the codes on the device.
     */
    static void writeGateUpScales(ExpertWeights w, int first, int count, MemorySegment dst) {
        checkRange(first, count, gateUpRows(w));
        requireFp8(w);
        for (int i = 0; i < count; i++) {
            int r = first + i;
            float[] scales = gateUpSource(w, r) == w.gate() ? w.scales().gate() : w.scales().up();
            dst.set(FLOAT_LE, 4L * i, scales[Math.toIntExact(gateUpSourceRow(r))]);
        }
    }

    /** Writes the scales of FP8 down rows {@code [first, first + count)} as little-endian f32 from {@code dst}'s offset 0. */
    static void writeDownScales(ExpertWeights w, int first, int count, MemorySegment dst) {
        checkRange(first, count, downRows(w));
        requireFp8(w);
        for (int i = 0; i < count; i++) {
            dst.set(FLOAT_LE, 4L * i, w.scales().down()[first + i]);
        }
    }

    private static Tensor gateUpSource(ExpertWeights w, int r) {
        return r % (2 * INTERLEAVE) < INTERLEAVE ? w.gate() : w.up();
    }

    private static long gateUpSourceRow(int r) {
        return (long) (r / (2 * INTERLEAVE)) * INTERLEAVE + r % INTERLEAVE;
    }

    private static void requireFp8(ExpertWeights w) {
        if (w.scales() == null) {
            throw new IllegalArgumentException("only FP8 experts have scales, this one is " + w.dtype());
        }
    }

    private static void checkRange(int first, int count, int rows) {
        if (first < 0 || count < 0 || first + count > rows) {
            throw new IndexOutOfBoundsException("rows [" + first + ", " + (first + count) + ") of " + rows);
        }
    }

    private static void copyRow(Tensor src, long row, int width, MemorySegment dst, long dstOffset) {
        switch (src.dtype()) {
            case FP8_E4M3 -> copyRowAsFp8(src, row, width, dst, dstOffset);
            case BF16 -> MemorySegment.copy(src.data(), row * width * 2, dst, dstOffset, (long) width * 2);
            default -> {
                long base = row * width;
                for (int c = 0; c < width; c++) {
                    dst.set(SHORT_LE, dstOffset + 2L * c, Numerics.toBf16(src.getFloat(base + c)));
                }
            }
        }
    }

    /**
     * The codes of one row as stored, permuted by {@link #FP8_ORDER} in groups of 16, zeros past the end.
     * A whole group is two little-endian longs, k 0..7 and k 8..15, whose 16-bit pairs the order interleaves.
     */
    private static void copyRowAsFp8(Tensor src, long row, int width, MemorySegment dst, long dstOffset) {
        MemorySegment data = src.data();
        long base = row * width;
        long whole = width & ~15L;
        for (long group = 0; group < whole; group += 16) {
            long lo = data.get(LONG_LE, base + group);
            long hi = data.get(LONG_LE, base + group + 8);
            dst.set(LONG_LE, dstOffset + group, interleavePairs(lo, hi));
            dst.set(LONG_LE, dstOffset + group + 8, interleavePairs(lo >>> 32, hi >>> 32));
        }
        if (whole < width) {
            for (int p = 0; p < 16; p++) {
                long k = whole + FP8_ORDER[p];
                byte code = k < width ? data.get(ValueLayout.JAVA_BYTE, base + k) : 0;
                dst.set(ValueLayout.JAVA_BYTE, dstOffset + whole + p, code);
            }
        }
    }

    /** Byte pairs 0 and 1 of {@code lo} and of {@code hi}, alternating: lo's first, hi's first, lo's second, hi's second. */
    private static long interleavePairs(long lo, long hi) {
        return (lo & 0xffffL) | (hi & 0xffffL) << 16 | (lo & 0xffff0000L) << 16 | (hi & 0xffff0000L) << 32;
    }
}
