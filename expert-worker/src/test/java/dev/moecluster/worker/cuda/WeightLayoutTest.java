package dev.moecluster.worker.cuda;

import static org.assertj.core.api.Assertions.assertThat;

import dev.moecluster.core.moe.ChannelScales;
import dev.moecluster.core.moe.ExpertWeights;
import dev.moecluster.core.tensor.DType;
import dev.moecluster.core.tensor.Numerics;
import dev.moecluster.core.tensor.Tensor;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import org.junit.jupiter.api.Test;

class WeightLayoutTest {
    private static final ValueLayout.OfShort SHORT_LE = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final int H = 16;
    private static final int I = 24;

    /** gate[i][h] = 1 + i, up[i][h] = -(1 + i), down[h][i] = 100 + h: every row says where it came from (exact in bf16). */
    private static ExpertWeights labelled(Arena arena, DType dtype) {
        float[] gate = new float[I * H];
        float[] up = new float[I * H];
        float[] down = new float[H * I];
        for (int i = 0; i < I; i++) {
            for (int h = 0; h < H; h++) {
                gate[i * H + h] = 1 + i;
                up[i * H + h] = -(1 + i);
                down[h * I + i] = 100 + h;
            }
        }
        return new ExpertWeights(Tensor.of(arena, dtype, new long[] {I, H}, gate),
                Tensor.of(arena, dtype, new long[] {I, H}, up), Tensor.of(arena, dtype, new long[] {H, I}, down));
    }

    private static float at(MemorySegment bf16, long index) {
        return Numerics.fromBf16(bf16.getAtIndex(SHORT_LE, index));
    }

    @Test
    void interleavesEightGateRowsWithTheSameEightUpRows() {
        for (DType dtype : new DType[] {DType.BF16, DType.F32, DType.F16}) {
            try (Arena arena = Arena.ofConfined()) {
                ExpertWeights w = labelled(arena, dtype);
                MemorySegment out = arena.allocate(2L * I * H * 2);
                WeightLayout.writeGateUpRows(w, 0, 2 * I, out);

                for (int r = 0; r < 2 * I; r++) {
                    int index = 8 * (r / 16) + r % 8;
                    float expected = (r % 16 < 8 ? 1 : -1) * (1 + index);
                    for (int h = 0; h < H; h++) {
                        assertThat(at(out, (long) r * H + h)).as("%s row %d", dtype, r).isEqualTo(expected);
                    }
                }
            }
        }
    }

    @Test
    void writesAnyRangeOfRowsFromTheStartOfTheBuffer() {
        try (Arena arena = Arena.ofConfined()) {
            ExpertWeights w = labelled(arena, DType.BF16);
            MemorySegment out = arena.allocate(5L * H * 2);
            WeightLayout.writeGateUpRows(w, 13, 5, out); // rows 13..17: up 5, 6, 7, then gate 8, 9

            assertThat(at(out, 0)).isEqualTo(-6);
            assertThat(at(out, 2L * H)).isEqualTo(-8);
            assertThat(at(out, 3L * H)).isEqualTo(9);
            assertThat(at(out, 4L * H + H - 1)).isEqualTo(10);
        }
    }

    @Test
    void keepsDownInItsLinearLayoutAsBf16() {
        try (Arena arena = Arena.ofConfined()) {
            ExpertWeights w = labelled(arena, DType.F32);
            MemorySegment out = arena.allocate(3L * I * 2);
            WeightLayout.writeDownRows(w, 7, 3, out);

            for (int r = 0; r < 3; r++) {
                for (int i = 0; i < I; i++) {
                    assertThat(at(out, (long) r * I + i)).isEqualTo(107 + r);
                }
            }
        }
    }

    /** An FP8 expert whose code at (row, k) is {@code (row * 7 + k) % 0x70}: the byte says where it came from. */
    private static ExpertWeights labelledFp8(Arena arena, int inter, int hidden) {
        Tensor[] t = new Tensor[3];
        int[][] shape = {{inter, hidden}, {inter, hidden}, {hidden, inter}};
        for (int m = 0; m < 3; m++) {
            int n = shape[m][0];
            int k = shape[m][1];
            float[] v = new float[n * k];
            for (int r = 0; r < n; r++) {
                for (int c = 0; c < k; c++) {
                    v[r * k + c] = Numerics.fromFp8((byte) (code(r, c) | (m == 1 ? 0x80 : 0))); // up's codes negative
                }
            }
            t[m] = Tensor.of(arena, DType.FP8_E4M3, new long[] {n, k}, v);
        }
        float[] gateScales = new float[inter];
        float[] upScales = new float[inter];
        float[] downScales = new float[hidden];
        for (int i = 0; i < inter; i++) {
            gateScales[i] = 1 + i;
            upScales[i] = -(1 + i);
        }
        for (int h = 0; h < hidden; h++) {
            downScales[h] = 100 + h;
        }
        return new ExpertWeights(t[0], t[1], t[2], new ChannelScales(gateScales, upScales, downScales));
    }

    private static int code(int row, int k) {
        return (row * 7 + k) % 0x70 + 1; // never 0, so padding (0) stands out; never a NaN code
    }

    @Test
    void fp8RowsKeepTheirCodesPermutedForTheFragmentLoadAndPaddedToSixteen() {
        int hidden = 40; // 2 whole groups of 16 and a partial one
        int inter = 24;
        try (Arena arena = Arena.ofConfined()) {
            ExpertWeights w = labelledFp8(arena, inter, hidden);
            assertThat(WeightLayout.deviceDtype(w.dtype())).isEqualTo(DType.FP8_E4M3);
            assertThat(WeightLayout.rowBytes(DType.FP8_E4M3, hidden)).isEqualTo(48);
            assertThat(WeightLayout.gateUpBytes(w)).isEqualTo(2L * inter * 48 + 4L * 2 * inter);
            assertThat(WeightLayout.downBytes(w)).isEqualTo(hidden * 32L + 4L * hidden);
            MemorySegment out = arena.allocate(2L * inter * 48);
            WeightLayout.writeGateUpRows(w, 0, 2 * inter, out);
            for (int r = 0; r < 2 * inter; r++) {
                int source = 8 * (r / 16) + r % 8;
                int sign = r % 16 < 8 ? 0 : 0x80;
                for (int p = 0; p < 48; p++) {
                    int k = 16 * (p / 16) + WeightLayout.FP8_ORDER[p % 16];
                    int expected = k < hidden ? code(source, k) | sign : 0;
                    assertThat(out.get(ValueLayout.JAVA_BYTE, (long) r * 48 + p) & 0xff).as("row %d byte %d (k %d)", r, p, k)
                            .isEqualTo(expected);
                }
            }
            // a range of down rows from offset 0; down's k (24) pads to 32
            MemorySegment down = arena.allocate(3L * 32);
            WeightLayout.writeDownRows(w, 5, 3, down);
            for (int r = 0; r < 3; r++) {
                for (int p = 0; p < 32; p++) {
                    int k = 16 * (p / 16) + WeightLayout.FP8_ORDER[p % 16];
                    assertThat(down.get(ValueLayout.JAVA_BYTE, r * 32L + p) & 0xff).isEqualTo(k < inter ? code(5 + r, k) : 0);
                }
            }
        }
    }

    @Test
    void fp8ScalesFollowTheInterleavedRowOrder() {
        try (Arena arena = Arena.ofConfined()) {
            ExpertWeights w = labelledFp8(arena, 24, 16);
            MemorySegment scales = arena.allocate(4L * 48);
            WeightLayout.writeGateUpScales(w, 0, 48, scales);
            ValueLayout.OfFloat le = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
            for (int r = 0; r < 48; r++) {
                int index = 8 * (r / 16) + r % 8;
                assertThat(scales.get(le, 4L * r)).as("row %d", r).isEqualTo((r % 16 < 8 ? 1 : -1) * (1f + index));
            }
            MemorySegment down = arena.allocate(4L * 2);
            WeightLayout.writeDownScales(w, 14, 2, down);
            assertThat(down.get(le, 0)).isEqualTo(114f);
            assertThat(down.get(le, 4)).isEqualTo(115f);
        }
    }
}
