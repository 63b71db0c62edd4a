package dev.moecluster.core.tensor;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.assertj.core.api.Assertions.within;

import java.lang.foreign.Arena;
import java.util.SplittableRandom;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;
import org.junit.jupiter.params.provider.ValueSource;
import org.junit.jupiter.api.Test;

class RowBatchTest {
    private static float[] gaussian(int n, long seed) {
        SplittableRandom r = new SplittableRandom(seed);
        float[] v = new float[n];
        for (int i = 0; i < n; i++) {
            v[i] = (float) (r.nextGaussian() * 3);
        }
        return v;
    }

    @ParameterizedTest
    @ValueSource(ints = {1, 7, 8, 17, 64, 1027})
    void bf16RowsRoundToNearestEvenAsTheScalarConversionDoesAtEveryWidth(int width) {
        float[] v = gaussian(3 * width, width);
        v[0] = Float.NaN;
        v[v.length - 1] = 0x1.ff8p0f; // a tie between two bf16 values: rounds to even
        RowBatch b = RowBatch.onHeap(DType.BF16, 3, width);
        for (int r = 0; r < 3; r++) {
            b.putRow(r, v, r * width, 1f);
        }
        float[] back = new float[v.length];
        b.widen(0, 3, back, 0);
        for (int i = 0; i < v.length; i++) {
            assertThat(Float.floatToRawIntBits(back[i])).as("value %d", i)
                    .isEqualTo(Float.floatToRawIntBits(Numerics.fromBf16(Numerics.toBf16(v[i]))));
        }
    }

    @ParameterizedTest
    @EnumSource(DType.class)
    void putRowScalesAndWidenReadsBackWithinTheDtypesPrecision(DType dtype) {
        int width = 37;
        float[] v = gaussian(2 * width, 3);
        RowBatch b = RowBatch.onHeap(dtype, 2, width);
        b.putRow(0, v, 0, 0.5f);
        b.putRow(1, v, width, 2f);
        float tol = switch (dtype) {
            case F32 -> 0f;
            case BF16 -> 0.05f;
            case F16 -> 0.01f;
            case FP8_E4M3 -> 1.5f;
        };
        for (int c = 0; c < width; c++) {
            assertThat(b.get(0, c)).isCloseTo(0.5f * v[c], within(tol));
            assertThat(b.get(1, c)).isCloseTo(2f * v[width + c], within(tol * 4));
        }
    }

    @ParameterizedTest
    @EnumSource(DType.class)
    void addRowToAccumulatesTheWeightedRow(DType dtype) {
        int width = 19;
        float[] v = gaussian(width, 9);
        RowBatch b = RowBatch.onHeap(dtype, 1, width);
        b.putRow(0, v, 0, 1f);
        float[] acc = new float[width + 3];
        java.util.Arrays.fill(acc, 1f);
        b.addRowTo(0, 0.25f, acc, 3);
        assertThat(acc[0]).isEqualTo(1f);
        for (int c = 0; c < width; c++) {
            assertThat(acc[3 + c]).isCloseTo(1f + 0.25f * b.get(0, c), within(1e-6f));
        }
    }

    @Test
    void fp8RowsCarryTheirOwnScaleAndSlicesKeepThem() {
        float[] v = {448f, -224f, 1f, 0.5f, 0.25f, 0f};
        RowBatch b = RowBatch.onHeap(DType.FP8_E4M3, 2, 3);
        b.putRow(0, v, 0, 1f);
        b.putRow(1, v, 3, 1f);
        assertThat(b.scale(0)).isEqualTo(1f);
        assertThat(b.scale(1)).isEqualTo(0.5f / 448f);
        RowBatch second = b.slice(1, 1);
        assertThat(second.scale(0)).isEqualTo(0.5f / 448f);
        assertThat(second.get(0, 0)).isEqualTo(0.5f);
        assertThat(second.get(0, 2)).isZero();
    }

    @ParameterizedTest
    @EnumSource(DType.class)
    void firstNonFiniteFindsNanAndInfinityOnTheStoredBits(DType dtype) {
        int width = 40;
        RowBatch b = RowBatch.onHeap(dtype, 3, width);
        float[] v = gaussian(width, 1);
        for (int r = 0; r < 3; r++) {
            b.putRow(r, v, 0, 1f);
        }
        assertThat(b.firstNonFinite()).isEqualTo(-1);
        // e4m3fn has no infinity (it saturates at 448): a NaN is what it can carry.
        v[33] = dtype == DType.FP8_E4M3 ? Float.NaN : Float.POSITIVE_INFINITY;
        b.putRow(2, v, 0, 1f);
        long at = b.firstNonFinite();
        assertThat(at / width).isEqualTo(2);
        assertThat(at % width).isEqualTo(33);
    }

    /**
     * The word-at-a-time scan against the element loop: a batch of the largest finite values of
     * both signs (every exponent bit but one set, so a lane test that leaked into its neighbour
     * would fire) is finite; one non-finite element is found wherever it sits, at the first and last
     * index, on both sides of a scan chunk's edge and in the tail that fills no whole word. Both in
     * heap memory and in native memory (a worker's received batches), which the scan reads in place.
     */
    @ParameterizedTest
    @EnumSource(DType.class)
    void firstNonFiniteFindsOneElementAnywhereAmongTheLargestFiniteValues(DType dtype) {
        int bytes = dtype.byteSize();
        int chunk = 1024 * 8 / bytes; // elements per scan chunk
        int width = 2 * chunk + 3 * 8 / bytes + 1; // a tail of one element past the last whole word
        for (RowBatch b : new RowBatch[] {RowBatch.onHeap(dtype, 1, width),
                RowBatch.allocate(java.lang.foreign.Arena.ofAuto(), dtype, 1, width)}) {
            assertFindsEveryNonFinite(b, dtype, chunk, width);
        }
    }

    private static void assertFindsEveryNonFinite(RowBatch b, DType dtype, int chunk, int width) {
        int bytes = dtype.byteSize();
        long largestFinite = switch (dtype) {
            case F32 -> 0x7f7fffffL;
            case BF16 -> 0x7f7fL;
            case F16 -> 0x7bffL;
            case FP8_E4M3 -> 0x7eL;
        };
        long sign = 1L << (8 * bytes - 1);
        long nonFinite = switch (dtype) {
            case F32 -> 0x7f800000L;
            case BF16 -> 0x7fc0L;
            case F16 -> 0x7c00L;
            case FP8_E4M3 -> 0x7fL;
        };
        if (dtype == DType.FP8_E4M3) {
            b.scales().fill((byte) 0);
            b.scales().set(java.lang.foreign.ValueLayout.JAVA_FLOAT_UNALIGNED, 0, 1f);
        }
        for (int at : new int[] {0, chunk - 1, chunk, chunk + 1, 2 * chunk - 1, 2 * chunk, width - 2, width - 1}) {
            for (int i = 0; i < width; i++) {
                put(b, i, bytes, (i % 2 == 0 ? 0 : sign) | largestFinite);
            }
            assertThat(b.firstNonFinite()).isEqualTo(-1);
            put(b, at, bytes, (at % 3 == 0 ? sign : 0) | nonFinite);
            assertThat(b.firstNonFinite()).as("non-finite at %d of %d, native %s", at, width, b.data().isNative()).isEqualTo(at);
        }
    }

    private static void put(RowBatch b, long index, int bytes, long bits) {
        for (int k = 0; k < bytes; k++) {
            b.data().set(java.lang.foreign.ValueLayout.JAVA_BYTE, index * bytes + k, (byte) (bits >>> (8 * k)));
        }
    }

    @ParameterizedTest
    @EnumSource(DType.class)
    void rowsWiderThanTheConversionChunksConvertEveryElementAsTheScalarAccessDoes(DType dtype) {
        // 2053 columns cross the 1024-element chunks of the bulk conversions twice, and three rows
        // cross the 4096-element chunk of the finiteness scan.
        int width = 2053;
        float[] v = gaussian(3 * width, 11);
        RowBatch b = RowBatch.onHeap(dtype, 3, width);
        for (int r = 0; r < 3; r++) {
            b.putRow(r, v, r * width, 0.75f);
        }
        float[] wide = new float[3 * width];
        b.widen(0, 3, wide, 0);
        float[] acc = new float[width];
        java.util.Arrays.fill(acc, 2f);
        b.addRowTo(2, 0.5f, acc, 0);
        float tol = switch (dtype) {
            case F32 -> 0f;
            case BF16 -> 0.08f;
            case F16 -> 0.01f;
            case FP8_E4M3 -> 1.5f;
        };
        for (int r = 0; r < 3; r++) {
            for (int c = 0; c < width; c++) {
                float stored = b.get(r, c);
                assertThat(stored).as("(%d, %d)", r, c).isCloseTo(0.75f * v[r * width + c], within(tol));
                assertThat(wide[r * width + c]).as("(%d, %d)", r, c).isEqualTo(stored);
            }
        }
        for (int c = 0; c < width; c++) {
            assertThat(acc[c]).as("column %d", c).isEqualTo(2f + 0.5f * b.get(2, c));
        }
        assertThat(b.firstNonFinite()).isEqualTo(-1);
        v[2 * width + 2000] = dtype == DType.FP8_E4M3 ? Float.NaN : Float.NEGATIVE_INFINITY;
        b.putRow(2, v, 2 * width, 1f);
        assertThat(b.firstNonFinite()).isEqualTo(2L * width + 2000);
    }

    @Test
    void copyFromCopiesSameDtypeAndConvertsOthers() {
        float[] v = gaussian(2 * 16, 4);
        RowBatch f32 = RowBatch.onHeap(DType.F32, 2, 16);
        f32.putRow(0, v, 0, 1f);
        f32.putRow(1, v, 16, 1f);
        try (Arena arena = Arena.ofConfined()) {
            RowBatch staged = RowBatch.allocate(arena, DType.BF16, 5, 16);
            staged.copyFrom(f32, 3);
            RowBatch again = RowBatch.allocate(arena, DType.BF16, 2, 16);
            again.copyFrom(staged.slice(3, 2), 0);
            for (int c = 0; c < 16; c++) {
                assertThat(again.get(1, c)).isEqualTo(Numerics.fromBf16(Numerics.toBf16(v[16 + c])));
            }
            assertThatThrownBy(() -> staged.copyFrom(f32, 4)).isInstanceOf(IllegalArgumentException.class);
        }
    }

    @Test
    void sizesAreCheckedInSixtyFourBits() {
        assertThat(RowBatch.dataBytes(DType.F32, Integer.MAX_VALUE, Integer.MAX_VALUE)).isEqualTo(4L * Integer.MAX_VALUE * Integer.MAX_VALUE);
        assertThatThrownBy(() -> RowBatch.onHeap(DType.F32, 1 << 20, 1 << 20)).isInstanceOf(IllegalArgumentException.class);
        assertThatThrownBy(() -> new RowBatch(DType.BF16, 2, 4, java.lang.foreign.MemorySegment.ofArray(new byte[15]),
                java.lang.foreign.MemorySegment.NULL)).hasMessageContaining("needs 16 bytes of data, got 15");
    }
}
