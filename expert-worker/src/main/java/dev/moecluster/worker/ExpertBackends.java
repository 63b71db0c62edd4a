package dev.moecluster.worker;

import dev.moecluster.core.kernel.CpuKernels;
import dev.moecluster.worker.cuda.CudaAvailability;
import dev.moecluster.worker.cuda.CudaBackend;
import dev.moecluster.worker.cuda.CudaFailure;
import java.util.List;
import java.util.logging.Logger;

/**
 * Creates the backend a worker is configured with: {@code cpu}, {@code cuda} (fails with one clear
 * message where no usable GPU is found), or {@code auto} (cuda where a GPU is usable, else cpu, with
 * one log line saying which and why).
 */
public final class ExpertBackends {
    private static final Logger LOG = Logger.getLogger(ExpertBackends.class.getName());

    /** The names {@link #create} accepts. */
    public static final List<String> NAMES = List.of("cpu", "cuda", "auto");

    private ExpertBackends() {}

    /**
     * The backend named {@code name}.
     *
     * @throws IllegalArgumentException for an unknown name
     * @throws IllegalStateException for {@code cuda} on a machine where it cannot start
     */
    public static ExpertBackend create(String name) {
        return create(name, "auto");
    }

    /**
     * The backend named {@code name}; a cpu backend (also auto's fallback) runs the GEMM
     * {@code cpuKernel} names ({@link CpuKernels#select}: auto, vector or native).
     *
     * @throws IllegalArgumentException for an unknown backend or kernel name
     * @throws IllegalStateException for {@code cuda} on a machine where it cannot start, or the
     *     {@code native} kernel where it cannot run
     */
    public static ExpertBackend create(String name, String cpuKernel) {
        if (!CpuKernels.NAMES.contains(cpuKernel)) {
            throw new IllegalArgumentException("unknown cpu kernel '" + cpuKernel + "' (available: "
                    + String.join(", ", CpuKernels.NAMES) + ")");
        }
        return switch (name) {
            case "cpu" -> new CpuBackend(CpuKernels.select(cpuKernel));
            case "cuda" -> cuda();
            case "auto" -> auto(cpuKernel);
            default -> throw new IllegalArgumentException("unknown backend '" + name + "' (available: " + String.join(", ", NAMES) + ")");
        };
    }

    private static ExpertBackend cuda() {
        CudaAvailability cuda = CudaAvailability.probe();
        if (!cuda.usable()) {
            throw new IllegalStateException("backend cuda is unavailable: " + cuda.description()
                    + " (use --backend cpu, or --backend auto to fall back to cpu)");
        }
        try {
            return CudaBackend.open();
        } catch (CudaFailure e) {
            throw new IllegalStateException("backend cuda failed to start: " + e.getMessage(), e);
        }
    }

    private static ExpertBackend auto(String cpuKernel) {
        CudaAvailability cuda = CudaAvailability.probe();
        if (!cuda.usable()) {
            LOG.info("backend auto: using cpu (" + cuda.description() + ")");
            return new CpuBackend(CpuKernels.select(cpuKernel));
        }
        try {
            CudaBackend backend = CudaBackend.open();
            LOG.info("backend auto: using cuda on " + cuda.description());
            return backend;
        } catch (CudaFailure e) {
            LOG.warning("backend auto: using cpu (cuda failed to start: " + e.getMessage() + ")");
            return new CpuBackend(CpuKernels.select(cpuKernel));
        }
    }
}
