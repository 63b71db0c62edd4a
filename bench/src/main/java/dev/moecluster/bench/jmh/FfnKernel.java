package dev.moecluster.bench.jmh;

import dev.moecluster.bench.nativekernel.NativeExpertFfn;
import dev.moecluster.bench.nativekernel.NativeGemm;
import dev.moecluster.core.moe.ExpertWeights;

/** One way to run an expert FFN, chosen by the name the benchmarks use as a parameter. */
interface FfnKernel {
    void forward(float[] x, int rows, float[] out);

    /** {@code vector} (core's Gemm, 4x3 blocking since the candidate comparison), {@code native} or {@code native-4x3}. */
    static FfnKernel of(String name, ExpertWeights expert) {
        return switch (name) {
            case "vector" -> expert::forward;
            case "native" -> new NativeExpertFfn(NativeGemm.load(NativeGemm.Blocking.FOUR_BY_TWO), expert)::forward;
            case "native-4x3" -> new NativeExpertFfn(NativeGemm.load(NativeGemm.Blocking.FOUR_BY_THREE), expert)::forward;
            default -> throw new IllegalArgumentException("unknown kernel " + name);
        };
    }
}
