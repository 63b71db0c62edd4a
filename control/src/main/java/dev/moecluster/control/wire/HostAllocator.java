package dev.moecluster.control.wire;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

/**
 * Where a worker's data-plane buffers come from: plain off-heap memory, or host memory a device
 * copies from and to by DMA (a {@code cuda} worker's pinned memory), so a received batch is uploaded
 * and a result downloaded without the CPU touching the rows.
 */
public interface HostAllocator {
    /** {@code bytes} of native memory, 64-byte aligned, with arbitrary contents. */
    MemorySegment allocate(long bytes);

    /** Gives back a segment from {@link #allocate}; nothing may use it afterwards. */
    void free(MemorySegment segment);

    /**
     * How many bytes of returned buffers a pool should keep for reuse: 64 MiB unless allocating and
     * freeing costs more than memory (pinned memory, whose free waits for the device).
     */
    default long retainedBytes() {
        return 64L << 20;
    }

    /** Plain off-heap memory; the garbage collector frees it once the pool lets it go. */
    HostAllocator OFF_HEAP = new HostAllocator() {
        @Override
        public MemorySegment allocate(long bytes) {
            return Arena.ofAuto().allocate(bytes, 64);
        }

        @Override
        public void free(MemorySegment segment) {}

        @Override
        public String toString() {
            return "off-heap";
        }
    };
}
