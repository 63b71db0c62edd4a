package dev.moecluster.worker;

import dev.moecluster.core.moe.ExpertWeights;

/**
 * Where expert FFNs run: {@code cpu} (the Vector API kernels) or {@code cuda} (JCuda). A backend
 * computes one expert on a batch of rows; the worker coalesces rows before calling it.
 */
public interface ExpertBackend extends AutoCloseable {
    /** The name shown in logs and {@code Describe}: {@code cpu}, {@code cuda}. */
    String name();

    /**
     * Computes {@code expert(x)} for {@code rows} rows of {@code input} ({@code rows × H}) into
     * {@code output} ({@code rows × H}).
     */
    void compute(ExpertWeights expert, float[] input, int rows, float[] output);

    @Override
    default void close() {}
}
