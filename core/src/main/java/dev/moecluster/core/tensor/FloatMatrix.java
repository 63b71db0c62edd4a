package dev.moecluster.core.tensor;

import static java.util.Objects.requireNonNull;

/** Activations in compute form: {@code rows × cols} f32 values, row-major, on the heap. */
public record FloatMatrix(int rows, int cols, float[] data) {
    public FloatMatrix {
        requireNonNull(data, "data is null");
        if (rows < 0 || cols < 0 || (long) rows * cols != data.length) {
            throw new IllegalArgumentException("matrix " + rows + "x" + cols + " does not match " + data.length + " values");
        }
    }

    public static FloatMatrix zeros(int rows, int cols) {
        return new FloatMatrix(rows, cols, new float[Math.multiplyExact(rows, cols)]);
    }

    public float get(int row, int col) {
        return data[row * cols + col];
    }

    /** Index of the first non-finite value (NaN or infinity), or -1. */
    public int firstNonFinite() {
        for (int i = 0; i < data.length; i++) {
            if (!Float.isFinite(data[i])) {
                return i;
            }
        }
        return -1;
    }
}
