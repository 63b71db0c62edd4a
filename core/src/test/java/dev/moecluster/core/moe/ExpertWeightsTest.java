package dev.moecluster.core.moe;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.assertj.core.api.Assertions.within;

import dev.moecluster.core.tensor.DType;
import dev.moecluster.core.tensor.Tensor;
import java.lang.foreign.Arena;
import java.util.SplittableRandom;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;
import org.junit.jupiter.api.Test;

class ExpertWeightsTest {

    static float[] gaussian(int n, SplittableRandom r, double std) {
        float[] v = new float[n];
        for (int i = 0; i < n; i++) {
            v[i] = (float) (r.nextGaussian() * std);
        }
        return v;
    }

    /** {@code down(silu(gate x) * up x)} for one row, in double, reading the weights element by element. */
    static double[] scalarSwiGlu(ExpertWeights w, float[] x, int offset) {
        int h = w.hiddenSize();
        int inter = w.intermediateSize();
        double[] act = new double[inter];
        for (int i = 0; i < inter; i++) {
            double g = 0, u = 0;
            for (int k = 0; k < h; k++) {
                g += w.gate().getFloat((long) i * h + k) * (double) x[offset + k];
                u += w.up().getFloat((long) i * h + k) * (double) x[offset + k];
            }
            act[i] = g / (1 + Math.exp(-g)) * u;
        }
        double[] out = new double[h];
        for (int k = 0; k < h; k++) {
            for (int i = 0; i < inter; i++) {
                out[k] += w.down().getFloat((long) k * inter + i) * act[i];
            }
        }
        return out;
    }

    @Test
    void forwardComputesSwiGluOnAHandCheckedExpert() {
        try (Arena arena = Arena.ofConfined()) {
            // H = 2, I = 1: gate picks x0, up picks x1, down writes the product to [1, 2] times.
            ExpertWeights w = new ExpertWeights(
                    Tensor.of(arena, DType.F32, new long[] {1, 2}, new float[] {1, 0}),
                    Tensor.of(arena, DType.F32, new long[] {1, 2}, new float[] {0, 1}),
                    Tensor.of(arena, DType.F32, new long[] {2, 1}, new float[] {1, 2}));
            // x = [1, 3]: silu(1) * 3 = 0.7310586 * 3 = 2.1931758; out = [2.1931758, 4.3863516].
            // x = [-1, 2]: silu(-1) * 2 = -0.26894143 * 2 = -0.53788286; out = [-0.53788286, -1.0757657].
            float[] out = new float[4];
            w.forward(new float[] {1, 3, -1, 2}, 2, out);
            assertThat(out).containsExactly(new float[] {2.1931758f, 4.3863516f, -0.53788286f, -1.0757657f}, within(1e-6f));
        }
    }

    @ParameterizedTest
    @EnumSource(names = {"F32", "BF16"})
    void forwardMatchesAScalarSwiGlu(DType dtype) {
        SplittableRandom r = new SplittableRandom(17);
        int h = 40, inter = 13;
        try (Arena arena = Arena.ofConfined()) {
            ExpertWeights w = new ExpertWeights(
                    Tensor.of(arena, dtype, new long[] {inter, h}, gaussian(inter * h, r, 0.3)),
                    Tensor.of(arena, dtype, new long[] {inter, h}, gaussian(inter * h, r, 0.3)),
                    Tensor.of(arena, dtype, new long[] {h, inter}, gaussian(h * inter, r, 0.3)));
            for (int rows : new int[] {1, 2, 3, 4, 5, 9}) {
                float[] x = gaussian(rows * h, r, 1.0);
                float[] out = new float[rows * h];
                w.forward(x, rows, out);
                for (int t = 0; t < rows; t++) {
                    double[] expected = scalarSwiGlu(w, x, t * h);
                    for (int k = 0; k < h; k++) {
                        assertThat((double) out[t * h + k]).as("rows %d, token %d, column %d", rows, t, k)
                                .isCloseTo(expected[k], within(1e-5 * (1 + Math.abs(expected[k]))));
                    }
                }
            }
        }
    }

    @Test
    void sizesAndByteSizeComeFromTheWeights() {
        try (Arena arena = Arena.ofConfined()) {
            ExpertWeights w = new ExpertWeights(
                    Tensor.of(arena, DType.BF16, new long[] {7, 16}, new float[112]),
                    Tensor.of(arena, DType.BF16, new long[] {7, 16}, new float[112]),
                    Tensor.of(arena, DType.BF16, new long[] {16, 7}, new float[112]));
            assertThat(w.hiddenSize()).isEqualTo(16);
            assertThat(w.intermediateSize()).isEqualTo(7);
            assertThat(w.byteSize()).isEqualTo(3 * 112 * 2L);
        }
    }

    @Test
    void inconsistentShapesAreRejected() {
        try (Arena arena = Arena.ofConfined()) {
            Tensor gate = Tensor.of(arena, DType.F32, new long[] {4, 8}, new float[32]);
            Tensor down = Tensor.of(arena, DType.F32, new long[] {8, 4}, new float[32]);
            Tensor upWrong = Tensor.of(arena, DType.F32, new long[] {5, 8}, new float[40]);
            assertThatThrownBy(() -> new ExpertWeights(gate, upWrong, down))
                    .isInstanceOf(IllegalArgumentException.class)
                    .hasMessageContaining("inconsistent expert shapes");
            // down given in the gate's layout ([I, H]) instead of [H, I]
            assertThatThrownBy(() -> new ExpertWeights(gate, gate, gate)).isInstanceOf(IllegalArgumentException.class);
            Tensor flat = Tensor.of(arena, DType.F32, new long[] {32}, new float[32]);
            assertThatThrownBy(() -> new ExpertWeights(flat, flat, down)).isInstanceOf(IllegalArgumentException.class);
            assertThatThrownBy(() -> new ExpertWeights(null, gate, down)).isInstanceOf(NullPointerException.class);
        }
    }

    @Test
    void siluOfKnownValues() {
        assertThat(ExpertWeights.silu(0)).isZero();
        assertThat(ExpertWeights.silu(1)).isCloseTo(0.7310586f, within(1e-7f));
        assertThat(ExpertWeights.silu(-1)).isCloseTo(-0.26894143f, within(1e-7f));
        assertThat(ExpertWeights.silu(2)).isCloseTo(1.7615942f, within(1e-6f));
        assertThat(ExpertWeights.silu(100)).isEqualTo(100f);
        assertThat(ExpertWeights.silu(-1000)).isZero().isNotNaN();
    }

    /**
     * The kernel's wire-dtype entry: rows arriving in bf16, fp8 or f32 (in several pieces, odd widths,
     * one row) give the scalar reference's outputs for the same (rounded) inputs, within the output
     * dtype's rounding.
     */
    @ParameterizedTest
    @EnumSource(value = DType.class)
    void forwardOnWireRowsMatchesTheScalarReferenceOnEdgeShapes(DType dtype) {
        SplittableRandom random = new SplittableRandom(11);
        int[][] shapes = {{13, 7}, {8, 24}, {33, 65}};
        for (int[] shape : shapes) {
            int h = shape[0];
            int inter = shape[1];
            try (Arena arena = Arena.ofConfined()) {
                ExpertWeights w = new ExpertWeights(
                        Tensor.of(arena, DType.BF16, new long[] {inter, h}, gaussian(inter * h, random, 0.3)),
                        Tensor.of(arena, DType.BF16, new long[] {inter, h}, gaussian(inter * h, random, 0.3)),
                        Tensor.of(arena, DType.BF16, new long[] {h, inter}, gaussian(h * inter, random, 0.3)));
                int[] pieces = {1, 4, 2};
                java.util.List<dev.moecluster.core.tensor.RowBatch> in = new java.util.ArrayList<>();
                java.util.List<dev.moecluster.core.tensor.RowBatch> out = new java.util.ArrayList<>();
                for (int rows : pieces) {
                    dev.moecluster.core.tensor.RowBatch x = dev.moecluster.core.tensor.RowBatch.onHeap(dtype, rows, h);
                    for (int r = 0; r < rows; r++) {
                        x.putRow(r, gaussian(h, random, 1.0), 0, 1f);
                    }
                    in.add(x);
                    out.add(dev.moecluster.core.tensor.RowBatch.onHeap(dtype, rows, h));
                }
                w.forward(in, out);
                for (int p = 0; p < pieces.length; p++) {
                    float[] x = in.get(p).toFloatMatrix().data();
                    for (int r = 0; r < pieces[p]; r++) {
                        double[] expected = scalarSwiGlu(w, x, r * h);
                        double scale = 0;
                        for (double e : expected) {
                            scale = Math.max(scale, Math.abs(e));
                        }
                        double tol = switch (dtype) {
                            case F32 -> 1e-4;
                            case BF16, F16 -> 1e-2;
                            case FP8_E4M3 -> 7e-2;
                        } * Math.max(scale, 1e-3);
                        for (int c = 0; c < h; c++) {
                            assertThat((double) out.get(p).get(r, c)).as("%s %dx%d piece %d row %d col %d", dtype, h, inter, p, r, c)
                                    .isCloseTo(expected[c], within(tol));
                        }
                    }
                }
            }
        }
    }

    @Test
    void forwardOnWireRowsPropagatesNan() {
        try (Arena arena = Arena.ofConfined()) {
            SplittableRandom random = new SplittableRandom(2);
            ExpertWeights w = new ExpertWeights(
                    Tensor.of(arena, DType.BF16, new long[] {8, 16}, gaussian(128, random, 0.3)),
                    Tensor.of(arena, DType.BF16, new long[] {8, 16}, gaussian(128, random, 0.3)),
                    Tensor.of(arena, DType.BF16, new long[] {16, 8}, gaussian(128, random, 0.3)));
            dev.moecluster.core.tensor.RowBatch x = dev.moecluster.core.tensor.RowBatch.onHeap(DType.BF16, 2, 16);
            float[] row = gaussian(16, random, 1.0);
            x.putRow(0, row, 0, 1f);
            row[5] = Float.NaN;
            x.putRow(1, row, 0, 1f);
            dev.moecluster.core.tensor.RowBatch y = dev.moecluster.core.tensor.RowBatch.onHeap(DType.BF16, 2, 16);
            w.forward(java.util.List.of(x), java.util.List.of(y));
            assertThat(y.slice(0, 1).firstNonFinite()).isEqualTo(-1);
            assertThat(y.slice(1, 1).firstNonFinite()).isGreaterThanOrEqualTo(0);
        }
    }
}
