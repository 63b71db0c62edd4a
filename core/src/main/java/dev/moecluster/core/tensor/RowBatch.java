package dev.moecluster.core.tensor;

import static java.util.Objects.requireNonNull;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.SegmentAllocator;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;

/**
 * Rows of activations in flight, in their wire dtype and in one buffer: little-endian f32, bf16 or
 * f16, or fp8 e4m3 with one f32 scale per row ({@code value = decode(byte) * scale[row]}). This is
 * the one representation activations have between the router's gate and a worker's kernel and back:
 * the router writes rows into it once, the worker's backend reads it as it is, and only kernels and
 * the router's combine widen it to f32.
 *
 * @param dtype the element type
 * @param rows number of rows
 * @param width values per row
 * @param data {@code rows × width} elements, row-major
 * @param scales FP8_E4M3 only: {@code rows} little-endian f32 scales; otherwise an empty segment
 */
public record RowBatch(DType dtype, int rows, int width, MemorySegment data, MemorySegment scales) {
    private static final ValueLayout.OfShort SHORT_LE = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfLong LONG_LE = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfInt INT_LE = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfFloat FLOAT_LE = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    public RowBatch {
        requireNonNull(dtype, "dtype is null");
        requireNonNull(data, "data is null");
        requireNonNull(scales, "scales is null");
        if (rows < 0 || width < 0) {
            throw new IllegalArgumentException("negative shape " + rows + "x" + width);
        }
        if (data.byteSize() != dataBytes(dtype, rows, width)) {
            throw new IllegalArgumentException(rows + "x" + width + " in " + dtype + " needs "
                    + dataBytes(dtype, rows, width) + " bytes of data, got " + data.byteSize());
        }
        long scaleBytes = dtype == DType.FP8_E4M3 ? 4L * rows : 0;
        if (scales.byteSize() != scaleBytes) {
            throw new IllegalArgumentException(rows + " rows in " + dtype + " need " + scaleBytes
                    + " bytes of scales, got " + scales.byteSize());
        }
    }

    /** Bytes of the elements of {@code rows × width} values in {@code dtype}, without scales. */
    public static long dataBytes(DType dtype, long rows, long width) {
        return rows * width * dtype.byteSize();
    }

    /** Bytes {@code rows × width} values take in {@code dtype}, scales included. */
    public static long wireBytes(DType dtype, long rows, long width) {
        return dataBytes(dtype, rows, width) + (dtype == DType.FP8_E4M3 ? 4L * rows : 0);
    }

    /** An uninitialised batch in memory from {@code allocator}, data and scales in one allocation. */
    public static RowBatch allocate(SegmentAllocator allocator, DType dtype, int rows, int width) {
        long dataBytes = dataBytes(dtype, rows, width);
        MemorySegment all = allocator.allocate(wireBytes(dtype, rows, width), 8);
        return new RowBatch(dtype, rows, width, all.asSlice(0, dataBytes), all.asSlice(dataBytes));
    }

    /**
     * A batch over one new heap array (data, then scales), so a message can wrap the array without
     * a copy: {@code data().heapBase()} is that array.
     */
    public static RowBatch onHeap(DType dtype, int rows, int width) {
        long bytes = wireBytes(dtype, rows, width);
        if (bytes > Integer.MAX_VALUE - 8) {
            throw new IllegalArgumentException(rows + "x" + width + " in " + dtype + " is too large for one message");
        }
        return over(MemorySegment.ofArray(new byte[(int) bytes]), dtype, rows, width);
    }

    /**
     * A batch over the first {@link #wireBytes} bytes of {@code memory} (data, then scales), as
     * {@link #onHeap} lays it out; the memory may be longer (a reused buffer).
     */
    public static RowBatch over(MemorySegment memory, DType dtype, int rows, int width) {
        long bytes = wireBytes(dtype, rows, width);
        if (bytes > memory.byteSize()) {
            throw new IllegalArgumentException(rows + "x" + width + " in " + dtype + " needs " + bytes
                    + " bytes, the buffer has " + memory.byteSize());
        }
        MemorySegment all = memory.asSlice(0, bytes);
        long dataBytes = dataBytes(dtype, rows, width);
        return new RowBatch(dtype, rows, width, all.asSlice(0, dataBytes), all.asSlice(dataBytes));
    }

    /** Rows {@code [from, from + count)} as a view over the same memory. */
    public RowBatch slice(int from, int count) {
        if (from < 0 || count < 0 || (long) from + count > rows) {
            throw new IndexOutOfBoundsException("rows [" + from + ", " + ((long) from + count) + ") of " + rows);
        }
        long rowBytes = (long) width * dtype.byteSize();
        MemorySegment sc = dtype == DType.FP8_E4M3 ? scales.asSlice(4L * from, 4L * count) : scales;
        return new RowBatch(dtype, count, width, data.asSlice(from * rowBytes, count * rowBytes), sc);
    }

    /** The f32 scale of {@code row} (1 for every dtype but FP8_E4M3). */
    public float scale(int row) {
        return dtype == DType.FP8_E4M3 ? scales.get(FLOAT_LE, 4L * row) : 1f;
    }

    /** Value {@code (row, col)} as f32. */
    public float get(int row, int col) {
        long i = (long) row * width + col;
        return switch (dtype) {
            case F32 -> data.getAtIndex(FLOAT_LE, i);
            case BF16 -> Numerics.fromBf16(data.getAtIndex(SHORT_LE, i));
            case F16 -> Numerics.fromF16(data.getAtIndex(SHORT_LE, i));
            case FP8_E4M3 -> Numerics.fromFp8(data.get(ValueLayout.JAVA_BYTE, i)) * scale(row);
        };
    }

    /** Widens rows {@code [from, from + count)} to f32 into {@code dst} from {@code offset}. */
    public void widen(int from, int count, float[] dst, int offset) {
        for (int r = 0; r < count; r++) {
            widenRow(from + r, 1f, dst, offset + r * width, false);
        }
    }

    /** All rows as an f32 matrix (a copy). */
    public FloatMatrix toFloatMatrix() {
        float[] out = new float[Math.multiplyExact(rows, width)];
        widen(0, rows, out, 0);
        return new FloatMatrix(rows, width, out);
    }

    /**
     * {@code dst[offset + c] += weight · row[c]} for every column: the router's combine. A product
     * and a sum rounded apart, not a fused multiply-add, so two experts' terms add up to the same
     * value in either order (replicas and plans may deliver them in any order).
     */
    public void addRowTo(int row, float weight, float[] dst, int offset) {
        widenRow(row, weight, dst, offset, true);
    }

    // Elements move between the segment and a small primitive array in bulk copies (one intrinsic
    // per chunk), and the conversions are plain loops over arrays. A per-element getAtIndex/setAtIndex
    // on a segment ran its bounds, alignment, read-only and liveness checks on every element here
    // (async-profiler on `bench moe-layer --hidden 4096`: over half of the process's CPU); plain array
    // loops were also 5-10x faster than the Vector API's shape-changing casts (S2I/I2S) on AVX2.
    private static final int CHUNK = 1024;

    private void widenRow(int row, float weight, float[] dst, int offset, boolean accumulate) {
        long base = (long) row * width;
        if (dtype == DType.F32 && !accumulate) {
            MemorySegment.copy(data, FLOAT_LE, base * 4, dst, offset, width);
            return;
        }
        float rowScale = scale(row);
        switch (dtype) {
            case BF16, F16 -> {
                short[] buf = new short[Math.min(width, CHUNK)];
                for (int c0 = 0; c0 < width; c0 += CHUNK) {
                    int n = Math.min(CHUNK, width - c0);
                    MemorySegment.copy(data, SHORT_LE, (base + c0) * 2, buf, 0, n);
                    int o = offset + c0;
                    if (dtype == DType.BF16) {
                        if (accumulate) {
                            for (int c = 0; c < n; c++) {
                                dst[o + c] += weight * Float.intBitsToFloat((buf[c] & 0xffff) << 16);
                            }
                        } else {
                            for (int c = 0; c < n; c++) {
                                dst[o + c] = Float.intBitsToFloat((buf[c] & 0xffff) << 16);
                            }
                        }
                    } else {
                        for (int c = 0; c < n; c++) {
                            float v = Float.float16ToFloat(buf[c]);
                            dst[o + c] = accumulate ? dst[o + c] + weight * v : v;
                        }
                    }
                }
            }
            case F32 -> {
                float[] buf = new float[Math.min(width, CHUNK)];
                for (int c0 = 0; c0 < width; c0 += CHUNK) {
                    int n = Math.min(CHUNK, width - c0);
                    MemorySegment.copy(data, FLOAT_LE, (base + c0) * 4, buf, 0, n);
                    int o = offset + c0;
                    for (int c = 0; c < n; c++) {
                        dst[o + c] += weight * buf[c];
                    }
                }
            }
            case FP8_E4M3 -> {
                byte[] buf = new byte[Math.min(width, CHUNK)];
                for (int c0 = 0; c0 < width; c0 += CHUNK) {
                    int n = Math.min(CHUNK, width - c0);
                    MemorySegment.copy(data, ValueLayout.JAVA_BYTE, base + c0, buf, 0, n);
                    int o = offset + c0;
                    for (int c = 0; c < n; c++) {
                        float v = Numerics.fromFp8(buf[c]) * rowScale;
                        dst[o + c] = accumulate ? dst[o + c] + weight * v : v;
                    }
                }
            }
        }
    }

    /**
     * Writes {@code scale · src[offset + c]} into {@code row}, rounding to nearest even as PyTorch
     * does; an fp8 row gets the scale that maps its largest magnitude to e4m3's largest value.
     */
    public void putRow(int row, float[] src, int offset, float scale) {
        long base = (long) row * width;
        switch (dtype) {
            case BF16, F16 -> {
                short[] buf = new short[Math.min(width, CHUNK)];
                for (int c0 = 0; c0 < width; c0 += CHUNK) {
                    int n = Math.min(CHUNK, width - c0);
                    int o = offset + c0;
                    if (dtype == DType.BF16) {
                        for (int c = 0; c < n; c++) {
                            buf[c] = Numerics.toBf16(src[o + c] * scale);
                        }
                    } else {
                        for (int c = 0; c < n; c++) {
                            buf[c] = Float.floatToFloat16(src[o + c] * scale);
                        }
                    }
                    MemorySegment.copy(buf, 0, data, SHORT_LE, (base + c0) * 2, n);
                }
            }
            case F32 -> {
                if (scale == 1f) {
                    MemorySegment.copy(src, offset, data, FLOAT_LE, base * 4, width);
                    return;
                }
                float[] buf = new float[Math.min(width, CHUNK)];
                for (int c0 = 0; c0 < width; c0 += CHUNK) {
                    int n = Math.min(CHUNK, width - c0);
                    int o = offset + c0;
                    for (int c = 0; c < n; c++) {
                        buf[c] = src[o + c] * scale;
                    }
                    MemorySegment.copy(buf, 0, data, FLOAT_LE, (base + c0) * 4, n);
                }
            }
            case FP8_E4M3 -> {
                float amax = 0f;
                for (int i = 0; i < width; i++) {
                    amax = Math.max(amax, Math.abs(src[offset + i] * scale));
                }
                // A scale below the smallest normal f32 has no finite inverse (or is 0), which would
                // turn the row into NaN; clamping it costs nothing for rows that small.
                float rowScale = amax == 0f || !Float.isFinite(amax) ? 1f
                        : Math.max(amax / Numerics.FP8_E4M3_MAX, Float.MIN_NORMAL);
                scales.set(FLOAT_LE, 4L * row, rowScale);
                float inv = 1f / rowScale;
                byte[] buf = new byte[Math.min(width, CHUNK)];
                for (int c0 = 0; c0 < width; c0 += CHUNK) {
                    int n = Math.min(CHUNK, width - c0);
                    int o = offset + c0;
                    for (int c = 0; c < n; c++) {
                        buf[c] = Numerics.toFp8(src[o + c] * scale * inv);
                    }
                    MemorySegment.copy(buf, 0, data, ValueLayout.JAVA_BYTE, base + c0, n);
                }
            }
        }
    }

    /**
     * Writes every row of {@code src} (same width) into this batch from row {@code at}: a plain copy
     * when the dtypes match, else each row widened and narrowed again.
     */
    public void copyFrom(RowBatch src, int at) {
        if (src.width != width || at < 0 || (long) at + src.rows > rows) {
            throw new IllegalArgumentException("cannot copy " + src + " into rows from " + at + " of " + this);
        }
        if (src.dtype == dtype) {
            long rowBytes = (long) width * dtype.byteSize();
            MemorySegment.copy(src.data, 0, data, at * rowBytes, src.data.byteSize());
            if (dtype == DType.FP8_E4M3) {
                MemorySegment.copy(src.scales, 0, scales, 4L * at, src.scales.byteSize());
            }
            return;
        }
        float[] row = new float[width];
        for (int r = 0; r < src.rows; r++) {
            src.widen(r, 1, row, 0);
            putRow(at + r, row, 0, 1f);
        }
    }

    /**
     * The flat index of the first NaN or infinite value, or -1 if all are finite: checked on the
     * stored bits, without widening. A value is NaN or infinite when its exponent bits are all ones
     * (for e4m3: its low seven bits, the format's NaN).
     */
    public long firstNonFinite() {
        return switch (dtype) {
            case BF16 -> firstAllOnes(0x7f80, 2);
            case F16 -> firstAllOnes(0x7c00, 2);
            case F32 -> firstAllOnes(0x7f800000, 4);
            case FP8_E4M3 -> {
                for (int r = 0; r < rows; r++) {
                    if (!Float.isFinite(scale(r))) {
                        yield (long) r * width;
                    }
                }
                yield firstAllOnes(0x7f, 1);
            }
        };
    }

    /**
     * The index of the first element of {@code bytes} bytes whose bits under {@code mask} are all
     * ones, or -1. Eight bytes at a time, several elements per word: {@code y = (word & masks) ^ masks}
     * has a zero lane exactly where an element matches, and {@code (y - lowBits) & ~y} sets that lane's
     * top bit (every mask leaves the lane's top bit clear, so no lane borrows from its neighbour).
     * The words of a chunk are OR-ed without a branch, which C2 vectorizes; only a chunk with a hit is
     * searched element by element. Native memory (a worker's received batches) is read in place, about
     * 0.3 µs per 10 KiB row here; heap memory through an array, about twice that.
     */
    private long firstAllOnes(long mask, int bytes) {
        long masks = 0;
        long lowBits = 0;
        long topBits = 0;
        for (int lane = 0; lane < 8 / bytes; lane++) {
            int shift = lane * bytes * 8;
            masks |= mask << shift;
            lowBits |= 1L << shift;
            topBits |= 1L << (shift + bytes * 8 - 1);
        }
        long n = (long) rows * width;
        long words = n * bytes / 8;
        boolean direct = data.isNative();
        long[] buf = direct ? null : new long[(int) Math.min(words, CHUNK)];
        long start = 0;
        for (long w = 0; w < words; ) {
            int m = (int) Math.min(CHUNK, words - w);
            long hits = 0;
            if (direct) { // read in place: half the time of a copy into an array first
                MemorySegment chunk = data.asSlice(w * 8, m * 8L);
                for (int j = 0; j < m; j++) {
                    long y = (chunk.getAtIndex(LONG_LE, j) & masks) ^ masks;
                    hits |= (y - lowBits) & ~y;
                }
            } else { // a heap segment's accessor is not hoisted out of this loop: copy into an array first
                MemorySegment.copy(data, LONG_LE, w * 8, buf, 0, m);
                for (int j = 0; j < m; j++) {
                    long y = (buf[j] & masks) ^ masks;
                    hits |= (y - lowBits) & ~y;
                }
            }
            if ((hits & topBits) != 0) {
                break; // the element loop below finds which, from this chunk on
            }
            w += m;
            start = w * 8 / bytes;
        }
        for (long i = start; i < n; i++) {
            long bits = switch (bytes) {
                case 1 -> data.get(ValueLayout.JAVA_BYTE, i);
                case 2 -> data.getAtIndex(SHORT_LE, i);
                default -> data.getAtIndex(INT_LE, i);
            };
            if ((bits & mask) == mask) {
                return i;
            }
        }
        return -1;
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
        return "RowBatch[" + dtype + " " + rows + "x" + width + "]";
    }
}
