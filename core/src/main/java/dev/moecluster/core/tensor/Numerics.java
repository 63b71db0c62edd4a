package dev.moecluster.core.tensor;

/** Scalar conversions between f32 and the narrow float formats, with the rounding PyTorch uses. */
public final class Numerics {
    /** Largest finite e4m3fn magnitude. */
    public static final float FP8_E4M3_MAX = 448f;

    private static final float[] FP8_DECODE = new float[256];

    static {
        for (int i = 0; i < 256; i++) {
            FP8_DECODE[i] = decodeFp8Slow((byte) i);
        }
    }

    private Numerics() {}

    /** f32 to bf16 with round-to-nearest-even; NaN stays NaN. */
    public static short toBf16(float f) {
        int bits = Float.floatToRawIntBits(f);
        if ((bits & 0x7fffffff) > 0x7f800000) {
            return (short) ((bits >>> 16) | 0x40);
        }
        int rounding = 0x7fff + ((bits >>> 16) & 1);
        return (short) ((bits + rounding) >>> 16);
    }

    public static float fromBf16(short b) {
        return Float.intBitsToFloat((b & 0xffff) << 16);
    }

    public static short toF16(float f) {
        return Float.floatToFloat16(f);
    }

    public static float fromF16(short h) {
        return Float.float16ToFloat(h);
    }

    public static float fromFp8(byte b) {
        return FP8_DECODE[b & 0xff];
    }

    /**
     * f32 to e4m3fn with round-to-nearest-even, saturating at ±448 (as torch's scaled casts do). On the
     * bits, without a division or a library call: a quantized wire row is thousands of these.
     */
    public static byte toFp8(float f) {
        if (f != f) {
            return (byte) 0x7f;
        }
        int sign = (Float.floatToRawIntBits(f) >>> 24) & 0x80;
        float a = Math.min(Math.abs(f), FP8_E4M3_MAX);
        int code;
        if (a < 0x1p-6f) {
            // subnormal (or zero): m · 2^-9, m in 0..8; adding 2^23 rounds a · 2^9 to an integer, to
            // nearest even, in the float's low mantissa bits (m == 8 is the smallest normal's code)
            code = Float.floatToRawIntBits(a * 512f + 0x1p23f) - 0x4b000000;
        } else {
            // normal: keep 3 of the 23 mantissa bits, rounding to nearest even (a carry moves into
            // the exponent as it should), and rebias the exponent from 127 to 7
            int bits = Float.floatToRawIntBits(a);
            code = Math.min(((bits + 0x7ffff + ((bits >>> 20) & 1)) >>> 20) - (120 << 3), 0x7e);
        }
        return (byte) (sign | code);
    }

    private static float decodeFp8Slow(byte b) {
        int v = b & 0xff;
        float sign = (v & 0x80) != 0 ? -1f : 1f;
        int exp = (v >>> 3) & 0xf;
        int mant = v & 0x7;
        if (exp == 0xf && mant == 0x7) {
            return Float.NaN;
        }
        if (exp == 0) {
            return sign * mant * 0x1p-9f;
        }
        return sign * (1f + mant / 8f) * Math.scalb(1f, exp - 7);
    }

    /** Rounds an f32 value to the nearest value representable in {@code type}. */
    public static float roundTo(DType type, float f) {
        return switch (type) {
            case F32 -> f;
            case BF16 -> fromBf16(toBf16(f));
            case F16 -> fromF16(toF16(f));
            case FP8_E4M3 -> fromFp8(toFp8(f));
        };
    }
}
