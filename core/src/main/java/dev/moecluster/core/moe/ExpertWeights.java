package dev.moecluster.core.moe;

import static java.util.Objects.requireNonNull;

import dev.moecluster.core.kernel.Gemm;
import dev.moecluster.core.kernel.MatMul;
import dev.moecluster.core.tensor.RowBatch;
import dev.moecluster.core.tensor.Tensor;
import java.util.List;

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
        forward(x, rows, out, Gemm.VECTOR);
    }

    /** As {@link #forward(float[], int, float[])}, with the GEMMs done by {@code kernel}. */
    public void forward(float[] x, int rows, float[] out, MatMul kernel) {
        int h = hiddenSize();
        int inter = intermediateSize();
        float[] g = new float[rows * inter];
        float[] u = new float[rows * inter];
        kernel.matmulTransposed(x, rows, h, gate, g);
        kernel.matmulTransposed(x, rows, h, up, u);
        for (int i = 0; i < g.length; i++) {
            g[i] = silu(g[i]) * u[i];
        }
        kernel.matmulTransposed(g, rows, inter, down, out);
    }

    /**
     * Runs the FFN on the rows of {@code inputs}, taken in order as one batch, into {@code outputs}
     * (the same row counts, each in its own dtype). Activations arrive and leave in their wire dtype:
     * the kernel widens them into its packed f32 operand once, and narrows the results as it writes.
     */
    public void forward(List<RowBatch> inputs, List<RowBatch> outputs) {
        forward(inputs, outputs, Gemm.VECTOR);
    }

    /** As {@link #forward(List, List)}, with the GEMMs done by {@code kernel}. */
    public void forward(List<RowBatch> inputs, List<RowBatch> outputs, MatMul kernel) {
        requireNonNull(kernel, "kernel is null");
        if (inputs.size() != outputs.size()) {
            throw new IllegalArgumentException(inputs.size() + " inputs but " + outputs.size() + " outputs");
        }
        int h = hiddenSize();
        int rows = 0;
        for (int i = 0; i < inputs.size(); i++) {
            RowBatch in = inputs.get(i);
            RowBatch out = outputs.get(i);
            if (in.width() != h || out.width() != h || in.rows() != out.rows()) {
                throw new IllegalArgumentException("rows " + in + " -> " + out + " do not fit hidden size " + h);
            }
            rows = Math.addExact(rows, in.rows());
        }
        float[] x = new float[Math.multiplyExact(rows, h)];
        int at = 0;
        for (RowBatch in : inputs) {
            in.widen(0, in.rows(), x, at * h);
            at += in.rows();
        }
        float[] y = new float[x.length];
        forward(x, rows, y, kernel);
        at = 0;
        for (RowBatch out : outputs) {
            for (int r = 0; r < out.rows(); r++) {
                out.putRow(r, y, (at + r) * h, 1f);
            }
            at += out.rows();
        }
    }

    public static float silu(float v) {
        return v / (1f + (float) Math.exp(-v));
    }
}
