package dev.moecluster.worker.cuda;

import static org.assertj.core.api.Assertions.assertThat;

import dev.moecluster.core.tensor.Numerics;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

class Bf16Test {
    private static final ValueLayout.OfShort SHORT_LE = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    @Test
    void roundsLikeTheScalarConversionIncludingTiesAndSpecialValues() {
        SplittableRandom random = new SplittableRandom(7);
        float[] values = new float[1000];
        for (int i = 0; i < values.length; i++) {
            values[i] = Float.intBitsToFloat(random.nextInt());
        }
        float[] special = {0f, -0f, 1f, Float.MIN_VALUE, Float.MAX_VALUE, Float.POSITIVE_INFINITY,
            Float.NEGATIVE_INFINITY, Float.NaN, Float.intBitsToFloat(0x3f808000), Float.intBitsToFloat(0x3f818000),
            Float.intBitsToFloat(0x7f800001), Float.intBitsToFloat(0xffc00001)};
        System.arraycopy(special, 0, values, 100, special.length);

        int from = 3;
        int count = values.length - 10; // an odd offset and a tail that the vector loop leaves over
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment out = arena.allocate(2L * count + 6);
            Bf16.encode(values, from, count, out, 6);
            for (int i = 0; i < count; i++) {
                assertThat(out.get(SHORT_LE, 6 + 2L * i)).as("value %s", values[from + i])
                        .isEqualTo(Numerics.toBf16(values[from + i]));
            }
        }
    }
}
