package dev.moecluster.worker;

import dev.moecluster.core.moe.ExpertWeights;

/** Runs experts on the CPU with core's tiled, multi-threaded Vector API kernels, weights as stored. */
public final class CpuBackend implements ExpertBackend {
    @Override
    public String name() {
        return "cpu";
    }

    @Override
    public void compute(ExpertWeights expert, float[] input, int rows, float[] output) {
        expert.forward(input, rows, output);
    }
}
