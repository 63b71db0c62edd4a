package dev.moecluster.core.tensor;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;
import org.junit.jupiter.api.Test;

class TensorTest {

    /** 0, 1, 2, ... n-1: exactly representable in every storage dtype for small n. */
    private static float[] iota(int n) {
        float[] v = new float[n];
        for (int i = 0; i < n; i++) {
            v[i] = i;
        }
        return v;
    }

    @ParameterizedTest
    @EnumSource(names = {"F32", "BF16", "F16"})
    void ofStoresValuesLittleEndianInTheRequestedDtype(DType dtype) {
        try (Arena arena = Arena.ofConfined()) {
            Tensor t = Tensor.of(arena, dtype, new long[] {2, 3}, new float[] {1, -2, 0.5f, 3, 4, 5});
            assertThat(t.dtype()).isEqualTo(dtype);
            assertThat(t.shape()).containsExactly(2, 3);
            assertThat(t.rank()).isEqualTo(2);
            assertThat(t.elementCount()).isEqualTo(6);
            assertThat(t.data().byteSize()).isEqualTo(6L * dtype.byteSize());
            assertThat(t.toFloatArray()).containsExactly(1, -2, 0.5f, 3, 4, 5);
            assertThat(t.getFloat(1)).isEqualTo(-2f);
            // The raw bytes are little-endian in the format's own encoding.
            MemorySegment d = t.data();
            switch (dtype) {
                case F32 -> assertThat(d.get(ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN), 4))
                        .isEqualTo(Float.floatToRawIntBits(-2f));
                case BF16 -> {
                    assertThat(d.get(ValueLayout.JAVA_BYTE, 2)).isEqualTo((byte) 0x00);
                    assertThat(d.get(ValueLayout.JAVA_BYTE, 3)).isEqualTo((byte) 0xc0); // -2 = 0xc000
                }
                case F16 -> {
                    assertThat(d.get(ValueLayout.JAVA_BYTE, 2)).isEqualTo((byte) 0x00);
                    assertThat(d.get(ValueLayout.JAVA_BYTE, 3)).isEqualTo((byte) 0xc0); // -2 = 0xc000
                }
                default -> throw new AssertionError();
            }
        }
    }

    @Test
    void ofRoundsToTheStorageDtype() {
        try (Arena arena = Arena.ofConfined()) {
            Tensor t = Tensor.of(arena, DType.BF16, new long[] {1}, new float[] {1f / 3f});
            assertThat(t.getFloat(0)).isEqualTo(0.333984375f);
        }
    }

    @Test
    void ofRejectsAValueCountThatDoesNotMatchTheShape() {
        try (Arena arena = Arena.ofConfined()) {
            assertThatThrownBy(() -> Tensor.of(arena, DType.F32, new long[] {2, 3}, new float[5]))
                    .isInstanceOf(IllegalArgumentException.class)
                    .hasMessageContaining("[2, 3]")
                    .hasMessageContaining("5 values");
        }
    }

    @Test
    void fp8TensorsHoldOneByteCodesAndReadBackTheirUnscaledValues() {
        try (Arena arena = Arena.ofConfined()) {
            Tensor t = Tensor.of(arena, DType.FP8_E4M3, new long[] {2, 3}, new float[] {1f, -2.5f, 448f, 1000f, 0.0f, 0.3f});
            assertThat(t.data().byteSize()).isEqualTo(6);
            // 1000 saturates at 448; 0.3 rounds to the nearest e4m3 value, 0.3125 (1.25 x 2^-2)
            assertThat(t.toFloatArray()).containsExactly(1f, -2.5f, 448f, 448f, 0f, 0.3125f);
            assertThat(t.data().get(java.lang.foreign.ValueLayout.JAVA_BYTE, 0)).isEqualTo((byte) 0x38);
            assertThat(t.transpose2d(arena).toFloatArray()).containsExactly(1f, 448f, -2.5f, 0f, 448f, 0.3125f);
            assertThatThrownBy(() -> new Tensor(DType.FP8_E4M3, new long[] {2}, arena.allocate(4)))
                    .isInstanceOf(IllegalArgumentException.class)
                    .hasMessageContaining("needs 2 bytes, got 4");
        }
    }

    @Test
    void constructorRejectsDataOfTheWrongSize() {
        try (Arena arena = Arena.ofConfined()) {
            assertThatThrownBy(() -> new Tensor(DType.BF16, new long[] {2, 3}, arena.allocate(11)))
                    .isInstanceOf(IllegalArgumentException.class)
                    .hasMessageContaining("needs 12 bytes, got 11");
        }
    }

    @Test
    void negativeDimensionsAreRejected() {
        assertThatThrownBy(() -> Tensor.elementCount(new long[] {2, -1}))
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("negative dimension");
    }

    @Test
    void shapeIsDefensivelyCopied() {
        try (Arena arena = Arena.ofConfined()) {
            long[] shape = {2, 2};
            Tensor t = Tensor.of(arena, DType.F32, shape, new float[4]);
            shape[0] = 7;
            t.shape()[1] = 9;
            assertThat(t.shape()).containsExactly(2, 2);
        }
    }

    @Test
    void scalarShapeHoldsOneElement() {
        try (Arena arena = Arena.ofConfined()) {
            Tensor t = Tensor.of(arena, DType.F32, new long[0], new float[] {4.5f});
            assertThat(t.elementCount()).isEqualTo(1);
            assertThat(t.getFloat(0)).isEqualTo(4.5f);
        }
    }

    @ParameterizedTest
    @EnumSource(names = {"F32", "BF16", "F16"})
    void sliceIsAViewOfOneIndexAlongTheFirstDimension(DType dtype) {
        try (Arena arena = Arena.ofConfined()) {
            Tensor t = Tensor.of(arena, dtype, new long[] {3, 2, 4}, iota(24));
            Tensor s = t.slice(2);
            assertThat(s.dtype()).isEqualTo(dtype);
            assertThat(s.shape()).containsExactly(2, 4);
            assertThat(s.toFloatArray()).containsExactly(16, 17, 18, 19, 20, 21, 22, 23);
            assertThat(t.slice(0).slice(1).toFloatArray()).containsExactly(4, 5, 6, 7);
            // A view: it shares memory with the parent.
            assertThat(s.data().address()).isEqualTo(t.data().address() + 16L * dtype.byteSize());
        }
    }

    @Test
    void sliceOutOfRangeFails() {
        try (Arena arena = Arena.ofConfined()) {
            Tensor t = Tensor.of(arena, DType.F32, new long[] {3, 2}, iota(6));
            assertThatThrownBy(() -> t.slice(3)).isInstanceOf(IndexOutOfBoundsException.class);
        }
    }

    @ParameterizedTest
    @EnumSource(names = {"F32", "BF16", "F16"})
    void transpose2dSwapsRowsAndColumnsKeepingTheDtype(DType dtype) {
        try (Arena arena = Arena.ofConfined()) {
            // [[0 1 2], [3 4 5]]
            Tensor t = Tensor.of(arena, dtype, new long[] {2, 3}, iota(6));
            Tensor tt = t.transpose2d(arena);
            assertThat(tt.dtype()).isEqualTo(dtype);
            assertThat(tt.shape()).containsExactly(3, 2);
            assertThat(tt.toFloatArray()).containsExactly(0, 3, 1, 4, 2, 5);
            assertThat(tt.transpose2d(arena).toFloatArray()).containsExactly(iota(6));
        }
    }

    @Test
    void transpose2dPreservesBitPatternsExactly() {
        try (Arena arena = Arena.ofConfined()) {
            float[] v = {1f / 3f, -7.123f, 1e-30f, 65000f, Float.NaN, -0f};
            Tensor t = Tensor.of(arena, DType.BF16, new long[] {2, 3}, v);
            Tensor tt = t.transpose2d(arena);
            for (int r = 0; r < 2; r++) {
                for (int c = 0; c < 3; c++) {
                    short a = t.data().getAtIndex(Tensor.SHORT_LE, r * 3 + c);
                    short b = tt.data().getAtIndex(Tensor.SHORT_LE, c * 2 + r);
                    assertThat(b).isEqualTo(a);
                }
            }
        }
    }

    @Test
    void transpose2dRejectsOtherRanks() {
        try (Arena arena = Arena.ofConfined()) {
            Tensor t = Tensor.of(arena, DType.F32, new long[] {2, 2, 2}, iota(8));
            assertThatThrownBy(() -> t.transpose2d(arena))
                    .isInstanceOf(IllegalArgumentException.class)
                    .hasMessageContaining("2-D");
        }
    }

    @ParameterizedTest
    @EnumSource(names = {"F32", "BF16", "F16"})
    void columnsCopiesAColumnRange(DType dtype) {
        try (Arena arena = Arena.ofConfined()) {
            // [[0 1 2 3], [4 5 6 7], [8 9 10 11]]
            Tensor t = Tensor.of(arena, dtype, new long[] {3, 4}, iota(12));
            Tensor c = t.columns(arena, 1, 3);
            assertThat(c.dtype()).isEqualTo(dtype);
            assertThat(c.shape()).containsExactly(3, 2);
            assertThat(c.toFloatArray()).containsExactly(1, 2, 5, 6, 9, 10);
            assertThat(t.columns(arena, 0, 4).toFloatArray()).containsExactly(iota(12));
            assertThat(t.columns(arena, 3, 4).toFloatArray()).containsExactly(3, 7, 11);
        }
    }

    @Test
    void columnsRejectsBadRanges() {
        try (Arena arena = Arena.ofConfined()) {
            Tensor t = Tensor.of(arena, DType.F32, new long[] {3, 4}, iota(12));
            assertThatThrownBy(() -> t.columns(arena, 2, 5)).isInstanceOf(IllegalArgumentException.class)
                    .hasMessageContaining("[2, 5)");
            assertThatThrownBy(() -> t.columns(arena, -1, 2)).isInstanceOf(IllegalArgumentException.class);
            assertThatThrownBy(() -> t.columns(arena, 2, 2)).isInstanceOf(IllegalArgumentException.class);
            Tensor v = Tensor.of(arena, DType.F32, new long[] {4}, iota(4));
            assertThatThrownBy(() -> v.columns(arena, 0, 1)).isInstanceOf(IllegalArgumentException.class);
        }
    }

    @Test
    void tensorsAreEqualOnlyToThemselves() {
        try (Arena arena = Arena.ofConfined()) {
            Tensor a = Tensor.of(arena, DType.F32, new long[] {1}, new float[] {1});
            Tensor b = Tensor.of(arena, DType.F32, new long[] {1}, new float[] {1});
            assertThat(a).isEqualTo(a).isNotEqualTo(b);
            assertThat(a.toString()).isEqualTo("Tensor[F32 [1]]");
        }
    }
}
