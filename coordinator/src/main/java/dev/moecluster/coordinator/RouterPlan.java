package dev.moecluster.coordinator;

import static java.util.Objects.requireNonNull;

import dev.moecluster.core.tensor.DType;

/**
 * The routers of a deployment and what sets its decode speed. Each router holds a copy of the
 * dense weights and the KV cache of the sequences it decodes (no tensor parallelism: one router, one
 * device), so the concurrency is split over as many routers as memory needs. Made by
 * {@link CapacityPlanner}.
 *
 * @param request what the routers are sized for
 * @param kvDtype the dtype the router's KV cache stores
 * @param denseBytes dense weights one router holds
 * @param kvBytesPerToken keys and values of one position over all layers
 * @param kvReadBytesPerSequence KV bytes one decode step reads for a sequence at full context: layers
 *     with chunked or sliding-window attention read only their window
 * @param memoryBytesPerRouter memory one router has for weights and KV cache after the reserve; 0 for
 *     a CPU host sized to fit
 * @param routers routers needed; 0 when the dense weights and one sequence's KV cache do not fit one
 * @param expertsTouchedPerLayer routed experts per MoE layer that one decode step of every sequence
 *     reaches, expected under uniform routing
 * @param expertBytesPerStep expert weights one such step reads, all workers together
 * @param workers expert workers the experts are spread over
 */
public record RouterPlan(
        RouterRequest request,
        DType kvDtype,
        long denseBytes,
        long kvBytesPerToken,
        long kvReadBytesPerSequence,
        long memoryBytesPerRouter,
        int routers,
        double expertsTouchedPerLayer,
        long expertBytesPerStep,
        int workers) {

    public RouterPlan {
        requireNonNull(request, "request is null");
        requireNonNull(kvDtype, "kvDtype is null");
        if (routers < 0 || workers < 1) {
            throw new IllegalArgumentException("routers must not be negative and workers positive, got " + routers
                    + " and " + workers);
        }
    }

    /** Whether a router can hold the dense weights and at least one sequence. */
    public boolean fits() {
        return routers > 0;
    }

    /** KV cache of one sequence at {@code contextTokens}. */
    public long kvBytesPerSequence() {
        return kvBytesPerToken * request.contextTokens();
    }

    /** KV cache of every sequence at full context. */
    public long kvBytes() {
        return kvBytesPerSequence() * request.concurrency();
    }

    /** Sequences on the fullest router when the concurrency is spread evenly; 0 when none fits. */
    public int sequencesPerRouter() {
        return fits() ? Math.ceilDiv(request.concurrency(), routers) : 0;
    }

    /** Dense weights and KV cache on the fullest router. */
    public long bytesPerRouter() {
        return denseBytes + sequencesPerRouter() * kvBytesPerSequence();
    }

    /** Bytes the fullest router reads in one decode step: every dense weight once, and its sequences' KV. */
    public long routerStepBytes() {
        return denseBytes + sequencesPerRouter() * kvReadBytesPerSequence;
    }

    public double routerStepSeconds() {
        return routerStepBytes() / request.routerBytesPerSecond();
    }

    /** Expert bytes one worker reads in one decode step, the experts spread evenly. */
    public long workerStepBytes() {
        return Math.ceilDiv(expertBytesPerStep, workers);
    }

    public double workerStepSeconds() {
        return workerStepBytes() / (request.acceleratorGbps() * 1e9);
    }

    /** Whether the routers' reads, rather than the workers', bound a decode step. */
    public boolean routersSetTheSpeed() {
        return routerStepSeconds() >= workerStepSeconds();
    }

    /** Decode steps per second memory bandwidth allows: one token per sequence each. */
    public double stepsPerSecond() {
        return 1 / Math.max(routerStepSeconds(), workerStepSeconds());
    }

    /** Accelerators the routers take: one each on GPUs, none on CPU hosts. */
    public int accelerators() {
        return request.device() == RouterRequest.Device.GPU ? routers : 0;
    }
}
