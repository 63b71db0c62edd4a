package dev.moecluster.core.moe;

import static java.util.Objects.requireNonNull;

import dev.moecluster.core.kernel.Gemm;
import dev.moecluster.core.kernel.MatMul;
import dev.moecluster.core.tensor.DType;
import dev.moecluster.core.tensor.RowBatch;
import dev.moecluster.core.tensor.Tensor;
import java.lang.foreign.Arena;
import java.util.List;

/**
 * One SwiGLU expert in Linear layout: {@code gate} and {@code up} are {@code [I, H]}, {@code down} is
 * {@code [H, I]}. The FFN is {@code down(silu(gate(x)) * up(x))}. FP8 experts keep their e4m3 codes
 * as stored and carry per-output-channel {@code scales}; other dtypes have none (null).
 */
public record ExpertWeights(Tensor gate, Tensor up, Tensor down, ChannelScales scales) {
    public ExpertWeights {
        requireNonNull(gate, "gate is null");
        requireNonNull(up, "up is null");
        requireNonNull(down, "down is null");
        if (gate.rank() != 2 || up.rank() != 2 || down.rank() != 2
                || gate.dim(0) != up.dim(0) || gate.dim(1) != up.dim(1)
                || down.dim(0) != gate.dim(1) || down.dim(1) != gate.dim(0)) {
            throw new IllegalArgumentException("inconsistent expert shapes: gate " + gate + ", up " + up + ", down " + down);
        }
        int fp8 = (gate.dtype() == DType.FP8_E4M3 ? 1 : 0) + (up.dtype() == DType.FP8_E4M3 ? 1 : 0)
                + (down.dtype() == DType.FP8_E4M3 ? 1 : 0);
        if (fp8 != 0 && fp8 != 3) {
            throw new IllegalArgumentException("an expert is FP8 in all three projections or none: gate " + gate
                    + ", up " + up + ", down " + down);
        }
        if (fp8 == 3) {
            if (scales == null) {
                throw new IllegalArgumentException("FP8 expert weights need per-channel scales");
            }
            if (scales.gate().length != gate.dim(0) || scales.up().length != up.dim(0)
                    || scales.down().length != down.dim(0)) {
                throw new IllegalArgumentException("FP8 scales need one value per weight row: " + gate.dim(0) + ", "
                        + up.dim(0) + " and " + down.dim(0) + ", got " + scales.gate().length + ", "
                        + scales.up().length + " and " + scales.down().length);
            }
        } else if (scales != null) {
            throw new IllegalArgumentException("only FP8 expert weights carry scales, these are " + gate.dtype());
        }
    }

    /** An expert whose weights are used as stored, without scales (f32, bf16, f16). */
    public ExpertWeights(Tensor gate, Tensor up, Tensor down) {
        this(gate, up, down, null);
    }

    /** Bytes one expert of this shape takes with weights in {@code dtype}; FP8 adds one f32 scale per weight row. */
    public static long byteSize(DType dtype, long hidden, long intermediate) {
        long bytes = 3 * hidden * intermediate * dtype.byteSize();
        return dtype == DType.FP8_E4M3 ? bytes + Float.BYTES * (2 * intermediate + hidden) : bytes;
    }

    /** The dtype the weights are stored in. */
    public DType dtype() {
        return gate.dtype();
    }

    /**
     * This expert with every weight in f32 and scales applied ({@code code × scale} for FP8), in
     * memory from {@code arena}: the reference the FP8 kernels are checked against.
     */
    public ExpertWeights dequantized(Arena arena) {
        if (scales == null) {
            return new ExpertWeights(toF32(arena, gate, null), toF32(arena, up, null), toF32(arena, down, null));
        }
        return new ExpertWeights(toF32(arena, gate, scales.gate()), toF32(arena, up, scales.up()),
                toF32(arena, down, scales.down()));
    }

    private static Tensor toF32(Arena arena, Tensor t, float[] rowScale) {
        float[] v = t.toFloatArray();
        if (rowScale != null) {
            int width = (int) t.dim(1);
            for (int i = 0; i < v.length; i++) {
                v[i] *= rowScale[i / width];
            }
        }
        return Tensor.of(arena, DType.F32, t.shape(), v);
    }

    public int hiddenSize() {
        return (int) gate.dim(1);
    }

    public int intermediateSize() {
        return (int) gate.dim(0);
    }

    /** Bytes of weights (and FP8 scales) this expert occupies. */
    public long byteSize() {
        long bytes = gate.data().byteSize() + up.data().byteSize() + down.data().byteSize();
        return scales == null ? bytes : bytes + scales.byteSize();
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
        if (scales != null) {
            // The kernels multiply FP8 codes as stored; each output channel's scale is applied once here.
            ChannelScales.apply(scales.gate(), g, rows);
            ChannelScales.apply(scales.up(), u, rows);
        }
        for (int i = 0; i < g.length; i++) {
            g[i] = silu(g[i]) * u[i];
        }
        kernel.matmulTransposed(g, rows, inter, down, out);
        if (scales != null) {
            ChannelScales.apply(scales.down(), out, rows);
        }
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
