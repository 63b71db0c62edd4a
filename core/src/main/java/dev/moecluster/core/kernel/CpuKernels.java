package dev.moecluster.core.kernel;

import java.util.List;
import java.util.logging.Logger;

/**
 * Picks the cpu backend's GEMM: {@code native} (fails with one clear message where it cannot run),
 * {@code vector} (the portable Vector API kernel, forced), or {@code auto} (native where it loads and
 * the CPU has its instructions, else vector), logging which path runs and why.
 */
public final class CpuKernels {
    private static final Logger LOG = Logger.getLogger(CpuKernels.class.getName());

    /** The names {@link #select} accepts. */
    public static final List<String> NAMES = List.of("auto", "vector", "native");

    private CpuKernels() {}

    /**
     * The kernel named {@code name}.
     *
     * @throws IllegalArgumentException for an unknown name
     * @throws IllegalStateException for {@code native} where the native kernel cannot run
     */
    public static MatMul select(String name) {
        return switch (name) {
            case "vector" -> {
                LOG.info("cpu kernel: vector (forced; " + Gemm.lanes() * 32 + "-bit Vector API)");
                yield Gemm.VECTOR;
            }
            case "native" -> {
                NativeGemm.Availability a = NativeGemm.probe();
                NativeGemm gemm = a.gemm().orElseThrow(() -> new IllegalStateException(
                        "cpu kernel native is unavailable: " + a.description() + " (use --cpu-kernel vector or auto)"));
                LOG.info("cpu kernel: native (" + a.description() + ")");
                yield gemm;
            }
            case "auto" -> {
                NativeGemm.Availability a = NativeGemm.probe();
                if (a.gemm().isPresent()) {
                    LOG.info("cpu kernel auto: native (" + a.description() + ")");
                    yield a.gemm().get();
                }
                LOG.info("cpu kernel auto: vector (" + a.description() + ")");
                yield Gemm.VECTOR;
            }
            default -> throw new IllegalArgumentException(
                    "unknown cpu kernel '" + name + "' (available: " + String.join(", ", NAMES) + ")");
        };
    }
}
