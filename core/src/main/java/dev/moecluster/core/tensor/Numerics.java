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

    /** f32 to e4m3fn with round-to-nearest-even, saturating at ±448 (as torch's scaled casts do). */
    public static byte toFp8(float f) {
        if (Float.isNaN(f)) {
            return (byte) 0x7f;
        }
        int sign = f < 0 || (f == 0 && 1 / f < 0) ? 0x80 : 0;
        float a = Math.min(Math.abs(f), FP8_E4M3_MAX);
        if (a < 0x1p-10f) { // below half the smallest subnormal (2^-9)
            return (byte) sign;
        }
        int exp = Math.getExponent(a);
        int biased = exp + 7;
        int code;
        if (biased <= 0) {
            // subnormal: value = m * 2^-9, m in 0..7
            int m = (int) Math.rint(a * 512f);
            code = m; // m == 8 becomes the smallest normal, which has the same encoding
        } else {
            float mant = a / Math.scalb(1f, exp) - 1f; // in [0, 1)
            int m = (int) Math.rint(mant * 8f);
            if (m == 8) {
                m = 0;
                biased++;
            }
            code = (biased << 3) | m;
            if (code > 0x7e) {
                code = 0x7e;
            }
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
