package dev.moecluster.control.wire;

import static java.util.Objects.requireNonNull;

import java.lang.foreign.MemorySegment;
import java.util.concurrent.ConcurrentLinkedDeque;
import java.util.concurrent.atomic.AtomicLong;

/**
 * Native buffers for a worker's data-plane messages, taken and given back instead of allocated per
 * message: received batches are read into them and results are built in them. Reuse matters twice:
 * a fresh buffer is written once more than a reused one (a new Java array is zeroed, which at Llama 4
 * Scout's shape cost as much as the copy that then filled it), and pinned memory is slow to allocate
 * and free. Buffers come in power-of-two sizes from {@value #MIN_BYTES} bytes to 1 GiB (larger
 * requests get an exact buffer that is freed when given back); the pool keeps at most
 * {@code retainedBytes} of returned buffers and frees the rest, so a burst does not pin its peak.
 *
 * <p>Thread-safe.
 */
public final class BufferPool implements AutoCloseable {
    /** The smallest buffer: one page. */
    public static final int MIN_BYTES = 4 << 10;
    private static final long MAX_CLASS_BYTES = 1L << 30;
    private static final int CLASSES = 31 - Integer.numberOfTrailingZeros(MIN_BYTES);

    private final HostAllocator allocator;
    @SuppressWarnings("unchecked")
    private final ConcurrentLinkedDeque<MemorySegment>[] free = new ConcurrentLinkedDeque[CLASSES];
    private final long retainedBytes;
    private final AtomicLong retained = new AtomicLong();
    private final AtomicLong reused = new AtomicLong();
    private final AtomicLong outstanding = new AtomicLong();
    private final AtomicLong outstandingBytes = new AtomicLong();
    private volatile boolean closed;

    /** A pool over {@code allocator}, keeping as many returned bytes as the allocator advises. */
    public BufferPool(HostAllocator allocator) {
        this(allocator, allocator.retainedBytes());
    }

    public BufferPool(HostAllocator allocator, long retainedBytes) {
        this.allocator = requireNonNull(allocator, "allocator is null");
        if (retainedBytes < 0) {
            throw new IllegalArgumentException("retained bytes " + retainedBytes + " < 0");
        }
        this.retainedBytes = retainedBytes;
        for (int c = 0; c < CLASSES; c++) {
            free[c] = new ConcurrentLinkedDeque<>();
        }
    }

    /** A buffer of at least {@code bytes} bytes, with arbitrary contents; give it back with {@link #give}. */
    public MemorySegment take(long bytes) {
        if (bytes < 0) {
            throw new IllegalArgumentException("buffer of " + bytes + " bytes");
        }
        int c = sizeClass(bytes);
        MemorySegment s = c < 0 ? null : free[c].pollFirst();
        if (s != null) {
            retained.addAndGet(-s.byteSize());
            reused.incrementAndGet();
        } else {
            s = allocator.allocate(c < 0 ? bytes : classBytes(c));
        }
        outstanding.incrementAndGet();
        outstandingBytes.addAndGet(s.byteSize());
        return s;
    }

    /** Returns a buffer from {@link #take} (whole, not a slice); the caller must not touch it afterwards. */
    public void give(MemorySegment buffer) {
        outstanding.decrementAndGet();
        long size = buffer.byteSize();
        outstandingBytes.addAndGet(-size);
        int c = sizeClass(size);
        if (c >= 0 && classBytes(c) == size && !closed) { // not one of the pool's sizes: freed
            if (retained.addAndGet(size) <= retainedBytes) {
                free[c].offerFirst(buffer); // the most recently used buffer is the likeliest to be in cache
                if (closed) {
                    close(); // closed meanwhile: free it after all
                }
                return;
            }
            retained.addAndGet(-size);
        }
        allocator.free(buffer);
    }

    /** Bytes of buffers held for reuse. */
    public long retainedBytes() {
        return retained.get();
    }

    /** Takes answered with a returned buffer. */
    public long reused() {
        return reused.get();
    }

    /** Buffers taken and not yet given back. */
    public long outstanding() {
        return outstanding.get();
    }

    /** Bytes of the buffers taken and not yet given back. */
    public long outstandingBytes() {
        return outstandingBytes.get();
    }

    /** Frees the buffers held for reuse; buffers given back later are freed then. */
    @Override
    public void close() {
        closed = true;
        for (ConcurrentLinkedDeque<MemorySegment> q : free) {
            MemorySegment s;
            while ((s = q.pollFirst()) != null) {
                retained.addAndGet(-s.byteSize());
                allocator.free(s);
            }
        }
    }

    /** The size class holding {@code bytes}, or -1 past the largest class. */
    private static int sizeClass(long bytes) {
        if (bytes > MAX_CLASS_BYTES) {
            return -1;
        }
        long rounded = Math.max(MIN_BYTES, bytes <= 1 ? 1 : Long.highestOneBit(bytes - 1) << 1);
        return Long.numberOfTrailingZeros(rounded) - Integer.numberOfTrailingZeros(MIN_BYTES);
    }

    private static long classBytes(int c) {
        return (long) MIN_BYTES << c;
    }
}
