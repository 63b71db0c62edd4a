package dev.moecluster.core.tensor;

import java.util.Locale;

/**
 * Element types the cluster stores and sends: weights in F32/BF16/F16, or routed experts in FP8-E4M3
 * with per-channel scales; activations on the wire also in FP8-E4M3 with per-row scales.
 */
public enum DType {
    F32(4, "F32"),
    BF16(2, "BF16"),
    F16(2, "F16"),
    /** OCP e4m3fn, one byte per element, with one f32 scale per row (or output channel) kept beside the data. */
    FP8_E4M3(1, "F8_E4M3");

    private final int byteSize;
    private final String safetensorsName;

    DType(int byteSize, String safetensorsName) {
        this.byteSize = byteSize;
        this.safetensorsName = safetensorsName;
    }

    public int byteSize() {
        return byteSize;
    }

    /** The dtype string used in safetensors headers. */
    public String safetensorsName() {
        return safetensorsName;
    }

    public static DType fromSafetensors(String name) {
        for (DType t : values()) {
            if (t.safetensorsName.equals(name)) {
                return t;
            }
        }
        throw new IllegalArgumentException("unsupported safetensors dtype " + name + " (supported: F32, BF16, F16, F8_E4M3)");
    }

    /** Parses a user-facing name such as {@code bf16}, {@code float32} or {@code fp8}. */
    public static DType parse(String name) {
        return switch (name.toLowerCase(Locale.ROOT)) {
            case "f32", "float32", "float" -> F32;
            case "bf16", "bfloat16" -> BF16;
            case "f16", "float16", "half" -> F16;
            case "fp8", "fp8_e4m3", "f8_e4m3", "float8_e4m3fn" -> FP8_E4M3;
            default -> throw new IllegalArgumentException("unknown dtype '" + name + "' (use f32, bf16, f16 or fp8)");
        };
    }
}
