package dev.moecluster.worker.cuda;

import static org.assertj.core.api.Assertions.assertThat;

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
}
