package dev.moecluster.worker;

import dev.moecluster.control.wire.HostAllocator;
import dev.moecluster.core.moe.ExpertWeights;

/**
 * Where expert FFNs run: {@code cpu} (core's Vector API kernels) or {@code cuda} (our PTX kernels
 * through JCuda). A backend owns the experts the worker holds ({@link #load}, {@link #unload}, its
 * {@link #memory}) and computes whole coalesced {@link Round}s in the activations' wire dtype.
 */
public interface ExpertBackend extends AutoCloseable {
    /** The name shown in logs and {@code Describe}: {@code cpu}, {@code cuda}. */
    String name();

    /**
     * Makes {@code expert} ready to compute, before its first round: pages its weights in (cpu) or
     * uploads them to the device (cuda).
     *
     * @throws IllegalStateException when the backend has no room for it
     */
    void load(ExpertWeights expert);

    /** Gives back what {@link #load} took; the expert is not computed again until loaded again. */
    void unload(ExpertWeights expert);

    /** What the backend's experts use and how much it could hold: the worker's capacity. */
    BackendMemory memory();

    /**
     * Where the worker puts received batches and builds results: memory the backend reads rows from
     * and writes outputs to best. Plain off-heap memory by default; a device backend's pinned memory,
     * which the device copies to and from by DMA without the CPU touching the rows.
     */
    default HostAllocator hostAllocator() {
        return HostAllocator.OFF_HEAP;
    }

    /**
     * Nanoseconds the device has spent in this backend's kernels so far (measured with device events),
     * or -1 where there is no device: set against the worker's round time, the share of a round the
     * device computes rather than waits for the host.
     */
    default long deviceNanos() {
        return -1;
    }

    /**
     * Starts computing a round and returns its completion. A backend that computes on the calling
     * thread returns a completed one; a device backend returns once the round is enqueued, so the
     * caller can prepare the next round meanwhile. The slices' inputs and outputs stay the round's
     * until {@link PendingRound#await} returns (a device may copy from and to them until then).
     */
    PendingRound submit(Round round);

    /**
     * Whether rounds may be submitted from any thread (one at a time), so a small one can run on the
     * thread that received it; a device backend bound to its own thread says no.
     */
    default boolean computesOnAnyThread() {
        return false;
    }

    /** Computes a round and waits for it. */
    default void compute(Round round) {
        submit(round).await();
    }

    @Override
    default void close() {}

    /** A submitted round; every slice's output is written once {@link #await} returns. */
    interface PendingRound {
        /** Whether {@link #await} would return at once. */
        boolean done();

        /** Waits for the round; throws what the computation threw. */
        void await();

        PendingRound COMPLETED = new PendingRound() {
            @Override
            public boolean done() {
                return true;
            }

            @Override
            public void await() {}
        };
    }
}
