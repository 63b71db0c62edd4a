package dev.moecluster.core.kernel;

import dev.moecluster.core.tensor.Tensor;

/**
 * One implementation of the expert GEMM {@code C = A · Wᵀ} with f32 activations and f32, bf16 or
 * FP8 (unscaled codes) weights used as stored: {@link Gemm#VECTOR} everywhere, {@link NativeGemm} where its library loads.
 * {@link CpuKernels#select} picks one.
 */
public interface MatMul {
    /** The name {@code --cpu-kernel} and the logs use. */
    String name();

    /** As {@link Gemm#matmulTransposed}: {@code c[r][n] = Σ_k a[r][k] · w[n][k]} for {@code rows} rows. */
    void matmulTransposed(float[] a, int rows, int k, Tensor w, float[] c);
}
