package dev.moecluster.worker.cuda;

import static jcuda.driver.JCudaDriver.cuMemAllocHost;
import static jcuda.driver.JCudaDriver.cuMemFreeHost;

import java.lang.foreign.MemorySegment;
import jcuda.Pointer;

/**
 * Page-locked host memory from {@code cuMemAllocHost}: the only host memory {@code cuMemcpy*Async}
 * copies without staging, seen from Java as a {@link MemorySegment}.
 */
final class PinnedBuffer {
    /** A host pointer whose address Java can read (JCuda keeps it protected). */
    private static final class HostPointer extends Pointer {
        long address() {
            return getNativePointer();
        }
    }

    private final HostPointer pointer = new HostPointer();
    private final long bytes;
    private final MemorySegment segment;
    private boolean freed;

    private PinnedBuffer(long bytes) {
        this.bytes = bytes;
        CudaFailure.check(cuMemAllocHost(pointer, bytes), "cuMemAllocHost(" + bytes + " bytes)");
        this.segment = MemorySegment.ofAddress(pointer.address()).reinterpret(bytes);
    }

    static PinnedBuffer allocate(long bytes) {
        if (bytes <= 0) {
            throw new IllegalArgumentException("pinned buffer of " + bytes + " bytes");
        }
        return new PinnedBuffer(bytes);
    }

    long bytes() {
        return bytes;
    }

    /** The memory, valid until {@link #free}. */
    MemorySegment segment() {
        return segment;
    }

    /** The JCuda pointer for copies, {@code offset} bytes in. */
    Pointer pointer(long offset) {
        return offset == 0 ? pointer : pointer.withByteOffset(offset);
    }

    void free() {
        if (!freed) {
            freed = true;
            CudaFailure.check(cuMemFreeHost(pointer), "cuMemFreeHost");
        }
    }
}
