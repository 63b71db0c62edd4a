package dev.moecluster.core.tensor;

import com.google.protobuf.ByteString;
import com.google.protobuf.UnsafeByteOperations;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.FloatBuffer;
import java.nio.ShortBuffer;

/**
 * Converts between the wire {@code moe.v1.Tensor} (raw little-endian bytes) and {@link FloatMatrix}.
 * Decoding validates shape and size and throws {@link IllegalArgumentException} with a message fit for
 * a client; encoding wraps the produced bytes without a copy.
 */
public final class WireTensors {
    private WireTensors() {}

    /** Decodes a 2-D wire tensor into f32 rows; throws with a client-facing message when malformed. */
    public static FloatMatrix decode(dev.moecluster.proto.Tensor t, String what) {
        DType dtype;
        try {
            dtype = DType.fromProto(t.getDtype());
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException(what + ": dtype is unset or unknown (use F32, BF16, F16 or FP8_E4M3)");
        }
        if (t.getShapeCount() != 2) {
            throw new IllegalArgumentException(what + ": expected shape [tokens, hidden], got " + t.getShapeList());
        }
        long rowsL = t.getShape(0);
        long colsL = t.getShape(1);
        // Bound each dimension first: the product of two unchecked int64 values can overflow to a small number.
        if (rowsL < 0 || colsL < 0 || rowsL > Integer.MAX_VALUE || colsL > Integer.MAX_VALUE
                || rowsL * colsL > Integer.MAX_VALUE) {
            throw new IllegalArgumentException(what + ": invalid shape " + t.getShapeList());
        }
        int rows = (int) rowsL;
        int cols = (int) colsL;
        int n = rows * cols;
        ByteString data = t.getData();
        long expected = (long) n * dtype.byteSize();
        if (data.size() != expected) {
            throw new IllegalArgumentException(what + ": shape " + t.getShapeList() + " in " + dtype + " needs "
                    + expected + " bytes of data, got " + data.size());
        }
        float[] out = new float[n];
        ByteBuffer buf = data.asReadOnlyByteBuffer().order(ByteOrder.LITTLE_ENDIAN);
        switch (dtype) {
            case F32 -> buf.asFloatBuffer().get(out);
            case BF16 -> {
                ShortBuffer s = buf.asShortBuffer();
                for (int i = 0; i < n; i++) {
                    out[i] = Numerics.fromBf16(s.get(i));
                }
            }
            case F16 -> {
                ShortBuffer s = buf.asShortBuffer();
                for (int i = 0; i < n; i++) {
                    out[i] = Numerics.fromF16(s.get(i));
                }
            }
            case FP8_E4M3 -> {
                ByteString scales = t.getScales();
                if (scales.size() != (long) rows * 4) {
                    throw new IllegalArgumentException(what + ": FP8_E4M3 needs one f32 scale per row (" + rows * 4
                            + " bytes), got " + scales.size());
                }
                FloatBuffer sc = scales.asReadOnlyByteBuffer().order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer();
                for (int r = 0; r < rows; r++) {
                    float scale = sc.get(r);
                    int base = r * cols;
                    for (int c = 0; c < cols; c++) {
                        out[base + c] = Numerics.fromFp8(buf.get(base + c)) * scale;
                    }
                }
            }
        }
        return new FloatMatrix(rows, cols, out);
    }

    /** Encodes {@code rows × cols} values starting at {@code offset} of {@code values}. */
    public static dev.moecluster.proto.Tensor encode(float[] values, int offset, int rows, int cols, DType dtype) {
        int n = rows * cols;
        dev.moecluster.proto.Tensor.Builder b = dev.moecluster.proto.Tensor.newBuilder()
                .setDtype(dtype.toProto())
                .addShape(rows)
                .addShape(cols);
        byte[] bytes = new byte[n * dtype.byteSize()];
        ByteBuffer buf = ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN);
        switch (dtype) {
            case F32 -> buf.asFloatBuffer().put(values, offset, n);
            case BF16 -> {
                ShortBuffer s = buf.asShortBuffer();
                for (int i = 0; i < n; i++) {
                    s.put(i, Numerics.toBf16(values[offset + i]));
                }
            }
            case F16 -> {
                ShortBuffer s = buf.asShortBuffer();
                for (int i = 0; i < n; i++) {
                    s.put(i, Numerics.toF16(values[offset + i]));
                }
            }
            case FP8_E4M3 -> {
                byte[] scales = new byte[rows * 4];
                FloatBuffer sc = ByteBuffer.wrap(scales).order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer();
                for (int r = 0; r < rows; r++) {
                    int base = offset + r * cols;
                    float amax = 0f;
                    for (int c = 0; c < cols; c++) {
                        amax = Math.max(amax, Math.abs(values[base + c]));
                    }
                    // A scale below the smallest normal f32 has no finite inverse (or is 0), which would
                    // turn the row into NaN; clamping it costs nothing for rows that small.
                    float scale = amax == 0f ? 1f : Math.max(amax / Numerics.FP8_E4M3_MAX, Float.MIN_NORMAL);
                    sc.put(r, scale);
                    float inv = 1f / scale;
                    for (int c = 0; c < cols; c++) {
                        bytes[r * cols + c] = Numerics.toFp8(values[base + c] * inv);
                    }
                }
                b.setScales(UnsafeByteOperations.unsafeWrap(scales));
            }
        }
        return b.setData(UnsafeByteOperations.unsafeWrap(bytes)).build();
    }

    public static dev.moecluster.proto.Tensor encode(FloatMatrix m, DType dtype) {
        return encode(m.data(), 0, m.rows(), m.cols(), dtype);
    }

    /** Bytes a {@code rows × cols} tensor occupies on the wire in {@code dtype}, scales included. */
    public static long wireBytes(int rows, int cols, DType dtype) {
        long bytes = (long) rows * cols * dtype.byteSize();
        return dtype == DType.FP8_E4M3 ? bytes + rows * 4L : bytes;
    }
}
