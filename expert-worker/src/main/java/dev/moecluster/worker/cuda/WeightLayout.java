package dev.moecluster.worker.cuda;

import dev.moecluster.core.moe.ExpertWeights;
import dev.moecluster.core.tensor.DType;
import dev.moecluster.core.tensor.Numerics;
import dev.moecluster.core.tensor.Tensor;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;

/**
 * The device layout of an expert's weights, bf16 whatever the checkpoint's dtype. {@code gate} and
 * {@code up} become one {@code [2I, H]} matrix, 8 rows of gate then the same 8 rows of up, so that one
 * GEMM computes both and a gate column and its up column end in the same thread's registers (see
 * {@code moe_ffn.cu}); {@code down} keeps its {@code [H, I]} Linear layout. Writers produce a range of
 * rows, so an upload can stream a matrix through a small pinned buffer.
 */
final class WeightLayout {
    /** Rows of gate (then of up) per interleave group; the kernel's n8 fragment width. */
    static final int INTERLEAVE = 8;

    private static final ValueLayout.OfShort SHORT_LE = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    private WeightLayout() {}

    /** Rows of the interleaved gate/up matrix: {@code 2 × intermediate}. */
    static int gateUpRows(ExpertWeights w) {
        return 2 * w.intermediateSize();
    }

    /** Rows of the down matrix: {@code hidden}. */
    static int downRows(ExpertWeights w) {
        return w.hiddenSize();
    }

    /**
     * Writes rows {@code [first, first + count)} of the interleaved gate/up matrix to {@code dst} from
     * offset 0, as bf16: row {@code r} is gate row {@code 8·(r/16) + r%8} when {@code r%16 < 8}, else
     * the up row of that index.
     */
    static void writeGateUpRows(ExpertWeights w, int first, int count, MemorySegment dst) {
        checkRange(first, count, gateUpRows(w));
        int h = w.hiddenSize();
        for (int i = 0; i < count; i++) {
            int r = first + i;
            int group = r / (2 * INTERLEAVE);
            int within = r % (2 * INTERLEAVE);
            Tensor src = within < INTERLEAVE ? w.gate() : w.up();
            long srcRow = (long) group * INTERLEAVE + within % INTERLEAVE;
            copyRowAsBf16(src, srcRow, h, dst, (long) i * h * 2);
        }
    }

    /** Writes rows {@code [first, first + count)} of the down matrix to {@code dst} from offset 0, as bf16. */
    static void writeDownRows(ExpertWeights w, int first, int count, MemorySegment dst) {
        checkRange(first, count, downRows(w));
        int inter = w.intermediateSize();
        for (int i = 0; i < count; i++) {
            copyRowAsBf16(w.down(), first + i, inter, dst, (long) i * inter * 2);
        }
    }

    private static void checkRange(int first, int count, int rows) {
        if (first < 0 || count < 0 || first + count > rows) {
            throw new IndexOutOfBoundsException("rows [" + first + ", " + (first + count) + ") of " + rows);
        }
    }

    private static void copyRowAsBf16(Tensor src, long row, int width, MemorySegment dst, long dstOffset) {
        if (src.dtype() == DType.BF16) {
            MemorySegment.copy(src.data(), row * width * 2, dst, dstOffset, (long) width * 2);
            return;
        }
        long base = row * width;
        for (int c = 0; c < width; c++) {
            dst.set(SHORT_LE, dstOffset + 2L * c, Numerics.toBf16(src.getFloat(base + c)));
        }
    }
}
