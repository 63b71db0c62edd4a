package dev.moecluster.core.moe;

import static java.util.Objects.requireNonNull;

import dev.moecluster.core.kernel.Gemm;
import dev.moecluster.core.tensor.Tensor;

/**
 * One SwiGLU expert in Linear layout: {@code gate} and {@code up} are {@code [I, H]}, {@code down} is
 * {@code [H, I]}. The FFN is {@code down(silu(gate(x)) * up(x))}.
 */
public record ExpertWeights(Tensor gate, Tensor up, Tensor down) {
    public ExpertWeights {
        requireNonNull(gate, "gate is null");
        requireNonNull(up, "up is null");
        requireNonNull(down, "down is null");
        if (gate.rank() != 2 || up.rank() != 2 || down.rank() != 2
                || gate.dim(0) != up.dim(0) || gate.dim(1) != up.dim(1)
                || down.dim(0) != gate.dim(1) || down.dim(1) != gate.dim(0)) {
            throw new IllegalArgumentException("inconsistent expert shapes: gate " + gate + ", up " + up + ", down " + down);
        }
    }

    public int hiddenSize() {
        return (int) gate.dim(1);
    }

    public int intermediateSize() {
        return (int) gate.dim(0);
    }

    /** Bytes of weights this expert occupies. */
    public long byteSize() {
        return gate.data().byteSize() + up.data().byteSize() + down.data().byteSize();
    }

    /** Runs the FFN on {@code rows} rows of {@code x} ({@code rows × H}) into {@code out} ({@code rows × H}). */
    public void forward(float[] x, int rows, float[] out) {
        int h = hiddenSize();
        int inter = intermediateSize();
        float[] g = new float[rows * inter];
        float[] u = new float[rows * inter];
        Gemm.matmulTransposed(x, rows, h, gate, g);
        Gemm.matmulTransposed(x, rows, h, up, u);
        for (int i = 0; i < g.length; i++) {
            g[i] = silu(g[i]) * u[i];
        }
        Gemm.matmulTransposed(g, rows, inter, down, out);
    }

    public static float silu(float v) {
        return v / (1f + (float) Math.exp(-v));
    }
}
