package dev.moecluster.worker.cuda;

import dev.moecluster.core.tensor.Numerics;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.ShortVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorShape;
import jdk.incubator.vector.VectorSpecies;

/**
 * f32 activations to bf16 for upload, with the round-to-nearest-even of {@link Numerics#toBf16}: half
 * the bytes over PCIe, and the kernels take bf16 operands anyway.
 */
final class Bf16 {
    private static final VectorSpecies<Float> F = FloatVector.SPECIES_PREFERRED;
    private static final VectorSpecies<Short> S = VectorSpecies.of(short.class, VectorShape.forBitSize(F.vectorBitSize() / 2));
    private static final ValueLayout.OfShort SHORT_LE = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    private Bf16() {}

    /** Writes {@code src[from, from + count)} as bf16 into {@code dst} from byte {@code dstOffset}. */
    static void encode(float[] src, int from, int count, MemorySegment dst, long dstOffset) {
        int i = 0;
        int bound = F.loopBound(count);
        for (; i < bound; i += F.length()) {
            IntVector bits = FloatVector.fromArray(F, src, from + i).reinterpretAsInts();
            // NaN keeps a quiet payload; everything else rounds to nearest even by adding 0x7fff + lsb.
            var nan = bits.and(0x7fffffff).compare(VectorOperators.GT, 0x7f800000);
            IntVector lsb = bits.lanewise(VectorOperators.LSHR, 16).and(1);
            IntVector rounded = bits.add(lsb).add(0x7fff).lanewise(VectorOperators.LSHR, 16);
            IntVector quiet = bits.lanewise(VectorOperators.LSHR, 16).or(0x40);
            IntVector out = rounded.blend(quiet, nan);
            ShortVector s = (ShortVector) out.convertShape(VectorOperators.I2S, S, 0);
            s.intoMemorySegment(dst, dstOffset + 2L * i, ByteOrder.LITTLE_ENDIAN);
        }
        for (; i < count; i++) {
            dst.set(SHORT_LE, dstOffset + 2L * i, Numerics.toBf16(src[from + i]));
        }
    }
}
