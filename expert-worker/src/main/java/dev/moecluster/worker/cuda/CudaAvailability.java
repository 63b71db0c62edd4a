package dev.moecluster.worker.cuda;

import static jcuda.driver.JCudaDriver.cuDeviceGetCount;
import static jcuda.driver.JCudaDriver.cuInit;

import java.lang.foreign.Arena;
import java.lang.foreign.SymbolLookup;
import java.util.Locale;
import jcuda.driver.CUresult;
import jcuda.driver.JCudaDriver;

/**
 * Whether this machine can run the {@code cuda} backend: a Linux x86-64 host with the NVIDIA driver
 * ({@code libcuda.so.1}) and a device of compute capability 8.0 or later (bf16 {@code mma.sync}).
 * Probing never throws; the description says what was found or what is missing, in one line.
 *
 * @param usable whether {@link CudaBackend#open()} can be expected to succeed
 * @param description the device ({@code NVIDIA H100 80GB HBM3, sm_90, 132 SMs, 79.2 GiB, driver 13.0})
 *     or the reason it is unusable ({@code no NVIDIA driver: libcuda.so.1 not found})
 */
public record CudaAvailability(boolean usable, String description) {
    /** Compute capability the kernels need: bf16 mma.sync, ldmatrix and cp.async arrived with sm_80. */
    static final int MIN_MAJOR = 8;

    private static final class Holder {
        static final CudaAvailability PROBED = detect();
    }

    /** Probes once per process (loading the driver and JCuda's native library if present). */
    public static CudaAvailability probe() {
        return Holder.PROBED;
    }

    private static CudaAvailability detect() {
        String os = System.getProperty("os.name", "").toLowerCase(Locale.ROOT);
        String arch = System.getProperty("os.arch", "");
        if (!os.contains("linux") || !(arch.equals("amd64") || arch.equals("x86_64"))) {
            return new CudaAvailability(false, "JCuda's driver library is bundled for linux-x86_64 only, this is " + os + "-" + arch);
        }
        // Look for the driver first: JCuda's own loader reports a missing libcuda.so.1 as a long stack trace.
        try {
            SymbolLookup.libraryLookup("libcuda.so.1", Arena.global());
        } catch (IllegalArgumentException e) {
            return new CudaAvailability(false, "no NVIDIA driver: libcuda.so.1 not found");
        }
        try {
            JCudaDriver.setExceptionsEnabled(false);
        } catch (LinkageError e) {
            String first = String.valueOf(e.getMessage()).lines().findFirst().orElse("");
            return new CudaAvailability(false, "JCuda's native driver library did not load: " + first);
        }
        int result = cuInit(0);
        if (result != CUresult.CUDA_SUCCESS) {
            return new CudaAvailability(false, "cuInit failed: " + CUresult.stringFor(result));
        }
        int[] count = new int[1];
        result = cuDeviceGetCount(count);
        if (result != CUresult.CUDA_SUCCESS || count[0] == 0) {
            return new CudaAvailability(false, "no CUDA device"
                    + (result != CUresult.CUDA_SUCCESS ? " (" + CUresult.stringFor(result) + ")" : ""));
        }
        try {
            CudaDevice.Properties p = CudaDevice.properties(0);
            if (p.major() < MIN_MAJOR) {
                return new CudaAvailability(false, p.name() + " has compute capability " + p.major() + "." + p.minor()
                        + "; the cuda backend needs " + MIN_MAJOR + ".0 or later (bf16 tensor cores)");
            }
            return new CudaAvailability(true, p.describe() + (count[0] > 1 ? " (device 0 of " + count[0] + ")" : ""));
        } catch (CudaFailure e) {
            return new CudaAvailability(false, e.getMessage());
        }
    }
}
