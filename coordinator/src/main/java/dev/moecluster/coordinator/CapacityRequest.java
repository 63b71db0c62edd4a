package dev.moecluster.coordinator;

import static java.util.Objects.requireNonNull;

import dev.moecluster.core.tensor.DType;
import java.util.Optional;

/**
 * What the capacity planner sizes a cluster for: the memory of one worker's accelerator, the share
 * of it kept back for activations, batch buffers and the runtime, the minimum copies of every expert
 * (each on a distinct worker), and the dtype the experts are held in.
 *
 * @param acceleratorBytes memory of one worker's accelerator (or host memory for a {@code cpu} worker)
 * @param reserveFraction share of {@code acceleratorBytes} not used for expert weights, in [0, 1)
 *     (default 0.10)
 * @param minReplicas copies of every expert, each on a distinct worker (default 1)
 * @param expertDtype the dtype experts are held in; empty means the checkpoint's {@code torch_dtype}
 */
public record CapacityRequest(long acceleratorBytes, double reserveFraction, int minReplicas,
        Optional<DType> expertDtype) {
    public static final double DEFAULT_RESERVE_FRACTION = 0.10;
    public static final int DEFAULT_MIN_REPLICAS = 1;

    public CapacityRequest {
        requireNonNull(expertDtype, "expertDtype is null");
        if (acceleratorBytes <= 0) {
            throw new IllegalArgumentException("accelerator memory must be positive, got " + acceleratorBytes + " bytes");
        }
        if (!(reserveFraction >= 0 && reserveFraction < 1)) {
            throw new IllegalArgumentException("reserve fraction must be in [0, 1), got " + reserveFraction);
        }
        if (minReplicas < 1) {
            throw new IllegalArgumentException("replicas must be at least 1, got " + minReplicas);
        }
    }

    /** An accelerator of {@code acceleratorBytes} with the default reserve and one copy per expert in the checkpoint's dtype. */
    public static CapacityRequest of(long acceleratorBytes) {
        return new CapacityRequest(acceleratorBytes, DEFAULT_RESERVE_FRACTION, DEFAULT_MIN_REPLICAS, Optional.empty());
    }

    /** Bytes of one accelerator left for expert weights after the reserve. */
    public long usableBytes() {
        return (long) Math.floor(acceleratorBytes * (1 - reserveFraction));
    }

    public CapacityRequest withReserveFraction(double reserveFraction) {
        return new CapacityRequest(acceleratorBytes, reserveFraction, minReplicas, expertDtype);
    }

    public CapacityRequest withMinReplicas(int minReplicas) {
        return new CapacityRequest(acceleratorBytes, reserveFraction, minReplicas, expertDtype);
    }

    public CapacityRequest withExpertDtype(DType dtype) {
        return new CapacityRequest(acceleratorBytes, reserveFraction, minReplicas, Optional.of(dtype));
    }
}
