package dev.moecluster.worker.cuda;

import dev.moecluster.control.wire.HostAllocator;
import java.lang.foreign.MemorySegment;
import java.util.Map;
import java.util.concurrent.ConcurrentSkipListMap;
import jcuda.Pointer;

/**
 * The {@code cuda} backend's page-locked host memory, all of it: the worker's data-plane buffers
 * (received batches are read into it and results built in it, as its {@link HostAllocator}) and the
 * backend's own staging buffers. It knows every buffer it handed out, so a round's rows that already
 * lie in pinned memory are copied to and from the device straight from where they are
 * ({@link #buffer}), by DMA, instead of through a staging copy on the CPU.
 *
 * <p>Thread-safe: allocating and freeing take a lock (both are rare: the worker's pool reuses buffers),
 * finding a buffer does not. Buffers given back after the backend closed are left alone: it freed them.
 */
final class PinnedHost implements HostAllocator {
    /** Freeing pinned memory waits for the device, so the worker's pool keeps more of it for reuse. */
    private static final long RETAINED_BYTES = 512L << 20;

    private final CudaDevice device;
    private final ConcurrentSkipListMap<Long, PinnedBuffer> buffers = new ConcurrentSkipListMap<>();
    private volatile boolean closed;

    PinnedHost(CudaDevice device) {
        this.device = device;
    }

    /** A pinned buffer the backend keeps (staging); give it back with {@link #release}. */
    synchronized PinnedBuffer allocateBuffer(long bytes) {
        if (closed) {
            throw new IllegalStateException("cuda backend is closed");
        }
        device.makeCurrent();
        PinnedBuffer b = PinnedBuffer.allocate(bytes);
        buffers.put(b.segment().address(), b);
        return b;
    }

    /** Frees {@code b}, unless the backend closed meanwhile (which freed it). */
    synchronized void release(PinnedBuffer b) {
        if (!closed && buffers.remove(b.segment().address(), b)) {
            device.makeCurrent();
            b.free();
        }
    }

    @Override
    public MemorySegment allocate(long bytes) {
        return allocateBuffer(bytes).segment();
    }

    @Override
    public void free(MemorySegment segment) {
        PinnedBuffer b = buffers.get(segment.address());
        if (b != null) {
            release(b);
        }
    }

    @Override
    public long retainedBytes() {
        return RETAINED_BYTES;
    }

    /** The pinned buffer {@code memory} lies in, whole, or null (heap memory, or native memory not from here). */
    PinnedBuffer buffer(MemorySegment memory) {
        if (!memory.isNative()) {
            return null;
        }
        Map.Entry<Long, PinnedBuffer> e = buffers.floorEntry(memory.address());
        if (e == null) {
            return null;
        }
        PinnedBuffer b = e.getValue();
        return memory.address() + memory.byteSize() <= e.getKey() + b.bytes() ? b : null;
    }

    /** The pointer to host address {@code address} for a copy: it must lie in {@code buffer}. */
    static Pointer pointer(PinnedBuffer buffer, long address) {
        return buffer.pointer(address - buffer.segment().address());
    }

    /**
     * Frees every buffer; later frees do nothing. Call with the backend's context current, before it
     * is released, once nothing reads or writes the worker's buffers any more.
     */
    synchronized void close() {
        closed = true;
        Map.Entry<Long, PinnedBuffer> e;
        while ((e = buffers.pollFirstEntry()) != null) {
            e.getValue().free();
        }
    }

    @Override
    public String toString() {
        return "cuda pinned";
    }
}
