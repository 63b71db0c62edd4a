package dev.moecluster.core.tensor;

import static java.util.Objects.requireNonNull;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.Arrays;

/**
 * A dense row-major tensor over a {@link MemorySegment}: a memory-mapped checkpoint slice or memory
 * owned by an arena. Values are little-endian, as safetensors stores them. An {@link DType#FP8_E4M3}
 * tensor holds the raw e4m3 codes, one byte each; its scales live beside it (an FP8 checkpoint's
 * {@code weight_scale}), so {@link #getFloat} reads the unscaled code value.
 */
public record Tensor(DType dtype, long[] shape, MemorySegment data) {
    static final ValueLayout.OfShort SHORT_LE = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    static final ValueLayout.OfFloat FLOAT_LE = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    public Tensor {
        requireNonNull(dtype, "dtype is null");
        requireNonNull(data, "data is null");
        shape = shape.clone();
        long expected = elementCount(shape) * dtype.byteSize();
        if (data.byteSize() != expected) {
            throw new IllegalArgumentException("tensor of shape " + Arrays.toString(shape) + " and dtype " + dtype
                    + " needs " + expected + " bytes, got " + data.byteSize());
        }
    }

    public static long elementCount(long[] shape) {
        long n = 1;
        for (long d : shape) {
            if (d < 0) {
                throw new IllegalArgumentException("negative dimension in " + Arrays.toString(shape));
            }
            n = Math.multiplyExact(n, d);
        }
        return n;
    }

    public long elementCount() {
        return elementCount(shape);
    }

    public int rank() {
        return shape.length;
    }

    public long dim(int i) {
        return shape[i];
    }

    @Override
    public long[] shape() {
        return shape.clone();
    }

    /** Reads element {@code index} (flat, row-major) as f32; for FP8 the code's value, without any scale. */
    public float getFloat(long index) {
        return switch (dtype) {
            case F32 -> data.getAtIndex(FLOAT_LE, index);
            case BF16 -> Numerics.fromBf16(data.getAtIndex(SHORT_LE, index));
            case F16 -> Numerics.fromF16(data.getAtIndex(SHORT_LE, index));
            case FP8_E4M3 -> Numerics.fromFp8(data.get(ValueLayout.JAVA_BYTE, index));
        };
    }

    /** Copies all elements out as f32. */
    public float[] toFloatArray() {
        long n = elementCount();
        if (n > Integer.MAX_VALUE) {
            throw new IllegalStateException("tensor too large for a float[]: " + Arrays.toString(shape));
        }
        float[] out = new float[(int) n];
        for (int i = 0; i < out.length; i++) {
            out[i] = getFloat(i);
        }
        return out;
    }

    /** The sub-tensor at {@code index} along the first dimension (a view, no copy). */
    public Tensor slice(long index) {
        long[] sub = Arrays.copyOfRange(shape, 1, shape.length);
        long bytes = elementCount(sub) * dtype.byteSize();
        return new Tensor(dtype, sub, data.asSlice(index * bytes, bytes));
    }

    /** A 2-D tensor transposed into new memory from {@code arena}, keeping the dtype. */
    public Tensor transpose2d(Arena arena) {
        if (shape.length != 2) {
            throw new IllegalArgumentException("transpose2d needs a 2-D tensor, got " + Arrays.toString(shape));
        }
        long rows = shape[0];
        long cols = shape[1];
        int size = dtype.byteSize();
        MemorySegment out = arena.allocate(data.byteSize(), 64);
        for (long r = 0; r < rows; r++) {
            for (long c = 0; c < cols; c++) {
                MemorySegment.copy(data, (r * cols + c) * size, out, (c * rows + r) * size, size);
            }
        }
        return new Tensor(dtype, new long[] {cols, rows}, out);
    }

    /** A copy of columns [from, to) of a 2-D tensor, in new memory from {@code arena}. */
    public Tensor columns(Arena arena, long from, long to) {
        if (shape.length != 2 || from < 0 || to > shape[1] || from >= to) {
            throw new IllegalArgumentException("bad column range [" + from + ", " + to + ") of " + Arrays.toString(shape));
        }
        long rows = shape[0];
        long width = to - from;
        int size = dtype.byteSize();
        MemorySegment out = arena.allocate(rows * width * size, 64);
        for (long r = 0; r < rows; r++) {
            MemorySegment.copy(data, (r * shape[1] + from) * size, out, r * width * size, width * size);
        }
        return new Tensor(dtype, new long[] {rows, width}, out);
    }

    /**
     * A tensor holding {@code values} converted to {@code dtype}, in memory from {@code arena}; FP8
     * encodes the values as they are (a caller that quantizes divides by its scales first).
     */
    public static Tensor of(Arena arena, DType dtype, long[] shape, float[] values) {
        if (elementCount(shape) != values.length) {
            throw new IllegalArgumentException("shape " + Arrays.toString(shape) + " does not hold " + values.length + " values");
        }
        MemorySegment seg = arena.allocate((long) values.length * dtype.byteSize(), 64);
        for (int i = 0; i < values.length; i++) {
            switch (dtype) {
                case F32 -> seg.setAtIndex(FLOAT_LE, i, values[i]);
                case BF16 -> seg.setAtIndex(SHORT_LE, i, Numerics.toBf16(values[i]));
                case F16 -> seg.setAtIndex(SHORT_LE, i, Numerics.toF16(values[i]));
                case FP8_E4M3 -> seg.set(ValueLayout.JAVA_BYTE, i, Numerics.toFp8(values[i]));
            }
        }
        return new Tensor(dtype, shape, seg);
    }

    @Override
    public boolean equals(Object o) {
        return this == o;
    }

    @Override
    public int hashCode() {
        return System.identityHashCode(this);
    }

    @Override
    public String toString() {
        return "Tensor[" + dtype + " " + Arrays.toString(shape) + "]";
    }
}
