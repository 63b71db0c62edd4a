package dev.moecluster.core.tensor;

import static org.assertj.core.api.Assertions.assertThat;

import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

class NumericsTest {

    private static float bits(int b) {
        return Float.intBitsToFloat(b);
    }

    // ---------------------------------------------------------------- bf16

    @Test
    void bf16KeepsExactlyRepresentableValues() {
        assertThat(Numerics.toBf16(1f)).isEqualTo((short) 0x3f80);
        assertThat(Numerics.toBf16(-2f)).isEqualTo((short) 0xc000);
        assertThat(Numerics.toBf16(0f)).isEqualTo((short) 0x0000);
        assertThat(Numerics.toBf16(-0f)).isEqualTo((short) 0x8000);
        assertThat(Numerics.fromBf16((short) 0x3f80)).isEqualTo(1f);
        assertThat(Numerics.fromBf16((short) 0x4049)).isEqualTo(3.140625f);
    }

    @Test
    void bf16RoundsHalfwayCasesToEven() {
        // 1 + 2^-8 lies exactly between 1.0 (0x3f80, even) and 1.0078125 (0x3f81): goes to the even one.
        assertThat(Numerics.toBf16(bits(0x3f808000))).isEqualTo((short) 0x3f80);
        // 1 + 3*2^-8 lies between 0x3f81 (odd) and 0x3f82 (even): goes up.
        assertThat(Numerics.toBf16(bits(0x3f818000))).isEqualTo((short) 0x3f82);
        // The same on the negative side.
        assertThat(Numerics.toBf16(bits(0xbf808000))).isEqualTo((short) 0xbf80);
        assertThat(Numerics.toBf16(bits(0xbf818000))).isEqualTo((short) 0xbf82);
    }

    @Test
    void bf16RoundsToNearestAwayFromTies() {
        assertThat(Numerics.toBf16(bits(0x3f808001))).isEqualTo((short) 0x3f81);
        assertThat(Numerics.toBf16(bits(0x3f807fff))).isEqualTo((short) 0x3f80);
        // 2/3 = 0x3f2aaaab: the dropped half 0xaaab is above the tie, so it rounds up.
        assertThat(Numerics.fromBf16(Numerics.toBf16(2f / 3f))).isEqualTo(0.66796875f);
        // 1/3 = 0x3eaaaaab likewise.
        assertThat(Numerics.fromBf16(Numerics.toBf16(1f / 3f))).isEqualTo(0.333984375f);
    }

    @Test
    void bf16CarriesIntoTheExponentAndOverflowsToInfinity() {
        // Mantissa all ones above the tie carries into the next binade: 1.99999... -> 2.0.
        assertThat(Numerics.toBf16(bits(0x3fffffff))).isEqualTo((short) 0x4000);
        assertThat(Numerics.toBf16(Float.MAX_VALUE)).isEqualTo((short) 0x7f80);
        assertThat(Numerics.toBf16(-Float.MAX_VALUE)).isEqualTo((short) 0xff80);
        assertThat(Numerics.toBf16(Float.POSITIVE_INFINITY)).isEqualTo((short) 0x7f80);
        assertThat(Numerics.toBf16(Float.NEGATIVE_INFINITY)).isEqualTo((short) 0xff80);
        // The largest finite bf16 survives.
        assertThat(Numerics.toBf16(Numerics.fromBf16((short) 0x7f7f))).isEqualTo((short) 0x7f7f);
    }

    @Test
    void bf16KeepsEveryNanANan() {
        assertThat(Numerics.fromBf16(Numerics.toBf16(Float.NaN))).isNaN();
        // A signalling NaN whose payload lives only in the low 16 bits: plain rounding would make it infinity.
        assertThat(Numerics.fromBf16(Numerics.toBf16(bits(0x7f800001)))).isNaN();
        assertThat(Numerics.fromBf16(Numerics.toBf16(bits(0xff800001)))).isNaN();
        assertThat(Numerics.fromBf16(Numerics.toBf16(bits(0x7fffffff)))).isNaN();
    }

    @Test
    void bf16RoundTripsEveryBf16Value() {
        for (int b = 0; b < 0x10000; b++) {
            float f = Numerics.fromBf16((short) b);
            if (Float.isNaN(f)) {
                continue;
            }
            assertThat(Numerics.toBf16(f)).as("bf16 0x%04x", b).isEqualTo((short) b);
        }
    }

    @Test
    void bf16IsTheNearestBf16WithTiesToEvenForRandomBitPatterns() {
        SplittableRandom random = new SplittableRandom(1);
        for (int n = 0; n < 200_000; n++) {
            float f = Float.intBitsToFloat(random.nextInt());
            if (Float.isNaN(f) || Float.isInfinite(f)) {
                continue;
            }
            assertThat(Numerics.toBf16(f)).as("%s", f).isEqualTo(nearestBf16(f));
        }
        for (float f : new float[] {Float.MAX_VALUE, Float.MIN_VALUE, Float.MIN_NORMAL, bits(0x7f7f8000), bits(0x7f7f7fff)}) {
            assertThat(Numerics.toBf16(f)).as("%s", f).isEqualTo(nearestBf16(f));
        }
    }

    /** The two bf16 neighbours of {@code f}, compared in double; ties to the even code. */
    private static short nearestBf16(float f) {
        int raw = Float.floatToRawIntBits(f);
        short down = (short) (raw >>> 16); // truncation: toward zero in magnitude
        short up = (short) (down + 1);
        double dDown = Math.abs(bf16Value(down) - f);
        double dUp = Math.abs(bf16Value(up) - f);
        if (dDown < dUp) {
            return down;
        } else if (dUp < dDown) {
            return up;
        }
        return (down & 1) == 0 ? down : up;
    }

    /** The bf16 value in double, with the infinity code standing for 2^128 as IEEE rounding treats it. */
    private static double bf16Value(short b) {
        return (b & 0x7fff) == 0x7f80 ? Math.copySign(0x1p128, b) : Numerics.fromBf16(b);
    }

    // ---------------------------------------------------------------- f16

    @Test
    void f16EncodesKnownValues() {
        assertThat(Numerics.toF16(1f)).isEqualTo((short) 0x3c00);
        assertThat(Numerics.toF16(-2f)).isEqualTo((short) 0xc000);
        assertThat(Numerics.toF16(65504f)).isEqualTo((short) 0x7bff);
        assertThat(Numerics.toF16(0x1p-24f)).isEqualTo((short) 0x0001); // smallest subnormal
        assertThat(Numerics.fromF16((short) 0x3555)).isEqualTo(0.33325195f);
        assertThat(Numerics.fromF16((short) 0x0001)).isEqualTo(0x1p-24f);
    }

    @Test
    void f16RoundsToEvenAndOverflowsToInfinity() {
        // 1 + 2^-11 is halfway between 1.0 (even) and 1 + 2^-10.
        assertThat(Numerics.toF16(1f + 0x1p-11f)).isEqualTo((short) 0x3c00);
        assertThat(Numerics.toF16(1f + 3 * 0x1p-11f)).isEqualTo((short) 0x3c02);
        // 65520 is halfway between 65504 and the next step (2^16), which is out of range.
        assertThat(Numerics.fromF16(Numerics.toF16(65520f))).isEqualTo(Float.POSITIVE_INFINITY);
        assertThat(Numerics.fromF16(Numerics.toF16(65519f))).isEqualTo(65504f);
        assertThat(Numerics.fromF16(Numerics.toF16(Float.NaN))).isNaN();
    }

    // ---------------------------------------------------------------- fp8 e4m3fn

    @Test
    void fp8DecodesKnownCodes() {
        assertThat(Numerics.fromFp8((byte) 0x00)).isEqualTo(0f);
        assertThat(Float.floatToRawIntBits(Numerics.fromFp8((byte) 0x80))).isEqualTo(Float.floatToRawIntBits(-0f));
        assertThat(Numerics.fromFp8((byte) 0x38)).isEqualTo(1f); // exponent 7 = bias, mantissa 0
        assertThat(Numerics.fromFp8((byte) 0x3c)).isEqualTo(1.5f);
        assertThat(Numerics.fromFp8((byte) 0x40)).isEqualTo(2f);
        assertThat(Numerics.fromFp8((byte) 0x7e)).isEqualTo(448f); // 1.75 * 2^8, the largest finite
        assertThat(Numerics.fromFp8((byte) 0xfe)).isEqualTo(-448f);
        assertThat(Numerics.fromFp8((byte) 0x7f)).isNaN();
        assertThat(Numerics.fromFp8((byte) 0xff)).isNaN();
        assertThat(Numerics.fromFp8((byte) 0x01)).isEqualTo(0x1p-9f); // smallest subnormal
        assertThat(Numerics.fromFp8((byte) 0x07)).isEqualTo(7 * 0x1p-9f); // largest subnormal
        assertThat(Numerics.fromFp8((byte) 0x08)).isEqualTo(0x1p-6f); // smallest normal
        // e4m3fn has no infinities: exponent 15 is an ordinary binade except for mantissa 7.
        assertThat(Numerics.fromFp8((byte) 0x78)).isEqualTo(256f);
        assertThat(Numerics.FP8_E4M3_MAX).isEqualTo(448f);
    }

    @Test
    void fp8EncodesKnownValues() {
        assertThat(Numerics.toFp8(1f)).isEqualTo((byte) 0x38);
        assertThat(Numerics.toFp8(-1.5f)).isEqualTo((byte) 0xbc);
        assertThat(Numerics.toFp8(448f)).isEqualTo((byte) 0x7e);
        assertThat(Numerics.toFp8(-448f)).isEqualTo((byte) 0xfe);
        assertThat(Numerics.toFp8(0x1p-9f)).isEqualTo((byte) 0x01);
        assertThat(Numerics.toFp8(-0x1p-9f)).isEqualTo((byte) 0x81);
        assertThat(Numerics.toFp8(0x1p-6f)).isEqualTo((byte) 0x08);
        assertThat(Numerics.toFp8(0f)).isEqualTo((byte) 0x00);
        assertThat(Numerics.toFp8(-0f)).isEqualTo((byte) 0x80);
    }

    @Test
    void fp8SaturatesAtPlusMinus448() {
        assertThat(Numerics.toFp8(449f)).isEqualTo((byte) 0x7e);
        assertThat(Numerics.toFp8(480f)).isEqualTo((byte) 0x7e); // would be the NaN code 0x7f without saturation
        assertThat(Numerics.toFp8(1e6f)).isEqualTo((byte) 0x7e);
        assertThat(Numerics.toFp8(Float.MAX_VALUE)).isEqualTo((byte) 0x7e);
        assertThat(Numerics.toFp8(Float.POSITIVE_INFINITY)).isEqualTo((byte) 0x7e);
        assertThat(Numerics.toFp8(-1e6f)).isEqualTo((byte) 0xfe);
        assertThat(Numerics.toFp8(Float.NEGATIVE_INFINITY)).isEqualTo((byte) 0xfe);
    }

    /**
     * The bit-level encoder against the arithmetic it replaced (exponent, scaled mantissa, rint), on
     * every f32 from 2^-12 to past the saturation point in steps of 2^-19 of its binade (so each fp8
     * rounding midpoint and its neighbours one ulp either side lie among them), both signs.
     */
    @Test
    void fp8EncodingMatchesTheArithmeticDefinitionEverywhere() {
        int checked = 0;
        for (int bits = Float.floatToRawIntBits(0x1p-12f); bits <= Float.floatToRawIntBits(1024f); bits += 1 << 4) {
            for (int delta = -1; delta <= 1; delta++) {
                float f = Float.intBitsToFloat(bits + delta);
                assertThat(Numerics.toFp8(f)).as("%s", f).isEqualTo(arithmeticFp8(f));
                assertThat(Numerics.toFp8(-f)).as("%s", -f).isEqualTo(arithmeticFp8(-f));
                checked++;
            }
        }
        assertThat(checked).isGreaterThan(1_000_000);
    }

    private static byte arithmeticFp8(float f) {
        int sign = f < 0 || (f == 0 && 1 / f < 0) ? 0x80 : 0;
        float a = Math.min(Math.abs(f), Numerics.FP8_E4M3_MAX);
        if (a < 0x1p-10f) {
            return (byte) sign;
        }
        int exp = Math.getExponent(a);
        int biased = exp + 7;
        int code;
        if (biased <= 0) {
            code = (int) Math.rint(a * 512f);
        } else {
            int m = (int) Math.rint((a / Math.scalb(1f, exp) - 1f) * 8f);
            if (m == 8) {
                m = 0;
                biased++;
            }
            code = Math.min((biased << 3) | m, 0x7e);
        }
        return (byte) (sign | code);
    }

    @Test
    void fp8MapsNanToTheNanCode() {
        assertThat(Numerics.toFp8(Float.NaN)).isEqualTo((byte) 0x7f);
        assertThat(Numerics.fromFp8(Numerics.toFp8(Float.NaN))).isNaN();
    }

    @Test
    void fp8RoundsHalfwayCasesToEven() {
        // 1 + 1/16 is halfway between 1.0 (mantissa 0) and 1.125 (mantissa 1).
        assertThat(Numerics.toFp8(1.0625f)).isEqualTo((byte) 0x38);
        // 1 + 3/16 is halfway between 1.125 (odd) and 1.25 (even).
        assertThat(Numerics.toFp8(1.1875f)).isEqualTo((byte) 0x3a);
        // 1 + 15/16 is halfway between 1.875 (mantissa 7) and 2.0: carries into the exponent.
        assertThat(Numerics.toFp8(1.9375f)).isEqualTo((byte) 0x40);
        // 2^-10 is halfway between 0 and the smallest subnormal 2^-9: goes to zero.
        assertThat(Numerics.toFp8(0x1p-10f)).isEqualTo((byte) 0x00);
        assertThat(Numerics.toFp8(-0x1p-10f)).isEqualTo((byte) 0x80);
        // 3 * 2^-10 is halfway between subnormals 1 and 2 (even).
        assertThat(Numerics.toFp8(3 * 0x1p-10f)).isEqualTo((byte) 0x02);
        // 7.5 * 2^-9 is halfway between the largest subnormal and the smallest normal (code 8, even).
        assertThat(Numerics.toFp8(7.5f * 0x1p-9f)).isEqualTo((byte) 0x08);
        // 416 = 1.625 * 2^8 is exactly code 0x7d.
        assertThat(Numerics.toFp8(416f)).isEqualTo((byte) 0x7d);
        // 432 is halfway between 416 (0x7d, odd) and 448 (0x7e, even).
        assertThat(Numerics.toFp8(432f)).isEqualTo((byte) 0x7e);
    }

    @Test
    void fp8RoundsSubnormalsToNearest() {
        assertThat(Numerics.toFp8(0x1p-11f)).isEqualTo((byte) 0x00);
        assertThat(Numerics.toFp8(0x1.1p-10f)).isEqualTo((byte) 0x01); // just above the tie
        assertThat(Numerics.toFp8(2.4f * 0x1p-9f)).isEqualTo((byte) 0x02);
        assertThat(Numerics.toFp8(Float.MIN_VALUE)).isEqualTo((byte) 0x00);
    }

    @Test
    void fp8RoundTripsAllCodesExceptNan() {
        for (int code = 0; code < 256; code++) {
            if (code == 0x7f || code == 0xff) {
                continue;
            }
            float v = Numerics.fromFp8((byte) code);
            assertThat(Numerics.toFp8(v) & 0xff).as("code 0x%02x (%s)", code, v).isEqualTo(code);
        }
    }

    @Test
    void fp8IsTheNearestCodeForRandomValues() {
        SplittableRandom random = new SplittableRandom(2);
        for (int n = 0; n < 50_000; n++) {
            // Uniform over bit patterns up to 464, so every binade (the subnormal ones too) is sampled alike.
            float f = Float.intBitsToFloat(random.nextInt(0x43e80001)) * (random.nextBoolean() ? -1 : 1);
            assertThat(Numerics.fromFp8(Numerics.toFp8(f))).as("%s", f).isEqualTo(nearestFp8(f));
        }
    }

    @Test
    void fp8TiesBetweenNeighbouringCodesGoToTheEvenCode() {
        for (int code = 0; code < 0x7e; code++) {
            float lo = Numerics.fromFp8((byte) code);
            float hi = Numerics.fromFp8((byte) (code + 1));
            float mid = (lo + hi) / 2; // exact in f32
            int even = (code & 1) == 0 ? code : code + 1;
            assertThat(Numerics.toFp8(mid) & 0xff).as("between 0x%02x and 0x%02x", code, code + 1).isEqualTo(even);
            assertThat(Numerics.toFp8(-mid) & 0xff).isEqualTo(even | 0x80);
        }
    }

    /** Brute force over every finite code; saturates beyond ±448. Zero compares equal to -0. */
    private static float nearestFp8(float f) {
        float target = Math.max(-448f, Math.min(448f, f));
        int best = -1;
        double bestDist = Double.POSITIVE_INFINITY;
        for (int code = 0; code < 256; code++) {
            float v = Numerics.fromFp8((byte) code);
            if (Float.isNaN(v)) {
                continue;
            }
            double d = Math.abs((double) v - target);
            if (d < bestDist || (d == bestDist && (code & 1) == 0 && (best & 1) == 1)) {
                best = code;
                bestDist = d;
            }
        }
        return Numerics.fromFp8((byte) best);
    }

    // ---------------------------------------------------------------- roundTo

    @Test
    void roundToUsesEachFormatsRounding() {
        float x = 1f / 3f;
        assertThat(Numerics.roundTo(DType.F32, x)).isEqualTo(x);
        assertThat(Numerics.roundTo(DType.BF16, x)).isEqualTo(0.333984375f);
        assertThat(Numerics.roundTo(DType.F16, x)).isEqualTo(0.33325195f);
        assertThat(Numerics.roundTo(DType.FP8_E4M3, x)).isEqualTo(0.34375f); // 1.375 * 2^-2
        assertThat(Numerics.roundTo(DType.FP8_E4M3, 1000f)).isEqualTo(448f);
    }
}
