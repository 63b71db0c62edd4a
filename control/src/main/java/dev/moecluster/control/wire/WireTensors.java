package dev.moecluster.control.wire;

import com.google.protobuf.ByteString;
import com.google.protobuf.UnsafeByteOperations;
import dev.moecluster.core.tensor.DType;
import dev.moecluster.core.tensor.FloatMatrix;
import dev.moecluster.core.tensor.RowBatch;
import dev.moecluster.proto.Tensor;
import java.lang.foreign.MemorySegment;

/**
 * The wire codec: between the {@code moe.v1.Tensor} message (raw little-endian bytes) and core's
 * {@link RowBatch}. Reading gives a view over the message's bytes (no copy, so a message parsed
 * with aliasing hands the received buffer straight to the kernel); writing wraps the batch's heap
 * array (no copy). Malformed tensors get an {@link IllegalArgumentException} fit for a client.
 */
public final class WireTensors {
    private WireTensors() {}

    /** The wire enum of {@code dtype}. */
    public static dev.moecluster.proto.DType proto(DType dtype) {
        return switch (dtype) {
            case F32 -> dev.moecluster.proto.DType.F32;
            case BF16 -> dev.moecluster.proto.DType.BF16;
            case F16 -> dev.moecluster.proto.DType.F16;
            case FP8_E4M3 -> dev.moecluster.proto.DType.FP8_E4M3;
        };
    }

    /** The dtype of a wire enum; unset or unknown values are an {@link IllegalArgumentException}. */
    public static DType dtype(dev.moecluster.proto.DType proto) {
        return switch (proto) {
            case F32 -> DType.F32;
            case BF16 -> DType.BF16;
            case F16 -> DType.F16;
            case FP8_E4M3 -> DType.FP8_E4M3;
            case DTYPE_UNSPECIFIED, UNRECOGNIZED ->
                    throw new IllegalArgumentException("dtype is unset or unknown (use F32, BF16, F16 or FP8_E4M3)");
        };
    }

    /**
     * The rows of a 2-D wire tensor as they are, over the message's own bytes; checks dtype, shape
     * and sizes in 64-bit arithmetic first.
     */
    public static RowBatch rows(Tensor t, String what) {
        DType dtype;
        try {
            dtype = dtype(t.getDtype());
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException(what + ": " + e.getMessage());
        }
        if (t.getShapeCount() != 2) {
            throw new IllegalArgumentException(what + ": expected shape [tokens, hidden], got " + shapeText(t));
        }
        long rows = t.getShape(0);
        long cols = t.getShape(1);
        // Bound each dimension first: the product of two unchecked int64 values can wrap to a small number.
        if (rows < 0 || cols < 0 || rows > Integer.MAX_VALUE || cols > Integer.MAX_VALUE || rows * cols > Integer.MAX_VALUE) {
            throw new IllegalArgumentException(what + ": invalid shape " + shapeText(t));
        }
        long expected = RowBatch.dataBytes(dtype, rows, cols);
        if (t.getData().size() != expected) {
            throw new IllegalArgumentException(what + ": shape " + shapeText(t) + " in " + dtype + " needs "
                    + expected + " bytes of data, got " + t.getData().size());
        }
        long scaleBytes = dtype == DType.FP8_E4M3 ? 4 * rows : 0;
        if (t.getScales().size() != scaleBytes) {
            throw new IllegalArgumentException(what + ": " + (dtype == DType.FP8_E4M3
                    ? "FP8_E4M3 needs one f32 scale per row (" + scaleBytes + " bytes), got " + t.getScales().size()
                    : dtype + " takes no scales, got " + t.getScales().size() + " bytes"));
        }
        return new RowBatch(dtype, (int) rows, (int) cols, view(t.getData()), view(t.getScales()));
    }

    /** A wire tensor over the batch's bytes: no copy when they are a whole heap array or its prefix. */
    public static Tensor tensor(RowBatch rows) {
        return Tensor.newBuilder()
                .setDtype(proto(rows.dtype()))
                .addShape(rows.rows())
                .addShape(rows.width())
                .setData(bytes(rows.data()))
                .setScales(bytes(rows.scales()))
                .build();
    }

    /** Decodes a 2-D wire tensor into f32 rows (a copy): for the public API, whose callers want f32. */
    public static FloatMatrix decode(Tensor t, String what) {
        return rows(t, what).toFloatMatrix();
    }

    /** Encodes {@code rows × cols} values starting at {@code offset} of {@code values}. */
    public static Tensor encode(float[] values, int offset, int rows, int cols, DType dtype) {
        RowBatch batch = RowBatch.onHeap(dtype, rows, cols);
        for (int r = 0; r < rows; r++) {
            batch.putRow(r, values, offset + r * cols, 1f);
        }
        return tensor(batch);
    }

    public static Tensor encode(FloatMatrix m, DType dtype) {
        return encode(m.data(), 0, m.rows(), m.cols(), dtype);
    }

    /** Bytes a {@code rows × cols} tensor occupies on the wire in {@code dtype}, scales included. */
    public static long wireBytes(int rows, int cols, DType dtype) {
        return RowBatch.wireBytes(dtype, rows, cols);
    }

    private static MemorySegment view(ByteString bytes) {
        return bytes.isEmpty() ? MemorySegment.ofArray(new byte[0]) : MemorySegment.ofBuffer(bytes.asReadOnlyByteBuffer());
    }

    private static ByteString bytes(MemorySegment segment) {
        if (segment.byteSize() == 0) {
            return ByteString.EMPTY;
        }
        if (segment.heapBase().orElse(null) instanceof byte[] array && !segment.isReadOnly()) {
            long at = segment.address();
            return UnsafeByteOperations.unsafeWrap(array, (int) at, (int) segment.byteSize());
        }
        return UnsafeByteOperations.unsafeWrap(segment.asByteBuffer());
    }

    private static String shapeText(Tensor t) {
        String s = t.getShapeList().toString();
        return s.length() > 64 ? s.substring(0, 61) + "...]" : s;
    }
}
