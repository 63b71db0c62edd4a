package dev.moecluster.cli;

import dev.moecluster.worker.cuda.CudaAvailability;
import java.util.List;
import java.util.logging.Logger;

/**
 * Resolves {@code moe router --backend} as the worker's flag does: {@code cpu}; {@code cuda}, which
 * fails with one clear message where no usable GPU is found; {@code auto}, cuda where a GPU is
 * usable for the router, else cpu with one log line saying why.
 */
final class RouterBackends {
    private static final Logger LOG = Logger.getLogger(RouterBackends.class.getName());

    /** The names {@code --backend} accepts. */
    static final List<String> NAMES = List.of("cpu", "cuda", "auto");

    private RouterBackends() {}

    /**
     * The backend ({@code cpu} or {@code cuda}) to put in the router's config for {@code name}, given
     * what the probe found.
     *
     * @throws IllegalArgumentException for an unknown name
     * @throws IllegalStateException for {@code cuda} without a usable device
     */
    static String resolve(String name, CudaAvailability cuda) {
        return switch (name) {
            case "cpu" -> "cpu";
            case "cuda" -> {
                if (!cuda.usable()) {
                    throw new IllegalStateException("no CUDA device: " + cuda.description()
                            + " (use --backend cpu, or --backend auto to fall back to cpu)");
                }
                yield "cuda";
            }
            case "auto" -> {
                if (!cuda.usable()) {
                    LOG.info("router backend auto: using cpu (no CUDA device: " + cuda.description() + ")");
                } else {
                    // the dense model has no device path yet, so a GPU does not change the choice
                    LOG.info("router backend auto: using cpu (" + cuda.description()
                            + " is usable, but the router's cuda backend is not available yet)");
                }
                yield "cpu";
            }
            default -> throw new IllegalArgumentException("unknown backend '" + name + "' (available: "
                    + String.join(", ", NAMES) + ")");
        };
    }
}
