package dev.moecluster.worker.cuda;

import jcuda.driver.CUresult;

/** A CUDA driver call that returned an error, or a GPU resource that ran out; the message names both. */
public final class CudaFailure extends RuntimeException {
    private static final long serialVersionUID = 1L;

    CudaFailure(String message) {
        super(message);
    }

    /** Throws unless {@code result} is {@code CUDA_SUCCESS}. */
    static void check(int result, String call) {
        if (result != CUresult.CUDA_SUCCESS) {
            throw new CudaFailure(call + " failed: " + CUresult.stringFor(result));
        }
    }
}
