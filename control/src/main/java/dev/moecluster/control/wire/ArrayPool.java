package dev.moecluster.control.wire;

import java.util.concurrent.ConcurrentLinkedDeque;
import java.util.concurrent.atomic.AtomicLong;

/**
 * Byte arrays for the data plane's large messages, taken and given back instead of allocated per
 * message. A new array is zeroed by the JVM, and at Llama 4 Scout's shape (256 rows of 10 KiB, far
 * past the caches) that zeroing cost a worker as much as the copy that then fills the array; a
 * reused one is only written. Arrays come in power-of-two sizes from {@value #MIN_BYTES} bytes to 1 GiB;
 * smaller requests get a plain new array (zeroing those is cheap), as do larger ones; the pool keeps at most
 * {@code retainedBytes} of returned arrays, dropping the rest to the garbage collector, so a burst
 * does not pin its peak.
 */
public final class ArrayPool {
    /** Below this, arrays are allocated and left to the collector. */
    public static final int MIN_BYTES = 64 << 10;
    private static final int CLASSES = 31 - Integer.numberOfTrailingZeros(MIN_BYTES);

    @SuppressWarnings("unchecked")
    private final ConcurrentLinkedDeque<byte[]>[] free = new ConcurrentLinkedDeque[CLASSES];
    private final long retainedBytes;
    private final AtomicLong retained = new AtomicLong();
    private final AtomicLong reused = new AtomicLong();

    public ArrayPool(long retainedBytes) {
        if (retainedBytes < 0) {
            throw new IllegalArgumentException("retained bytes " + retainedBytes + " < 0");
        }
        this.retainedBytes = retainedBytes;
        for (int c = 0; c < CLASSES; c++) {
            free[c] = new ConcurrentLinkedDeque<>();
        }
    }

    /** An array of at least {@code bytes} bytes, with arbitrary contents unless newly allocated. */
    public byte[] take(int bytes) {
        if (bytes < 0) {
            throw new IllegalArgumentException("array of " + bytes + " bytes");
        }
        int c = sizeClass(bytes);
        if (c < 0) {
            return new byte[bytes];
        }
        byte[] a = free[c].pollFirst();
        if (a == null) {
            return new byte[classBytes(c)];
        }
        retained.addAndGet(-a.length);
        reused.incrementAndGet();
        return a;
    }

    /** Returns an array from {@link #take}; the caller must not touch it afterwards. */
    public void give(byte[] array) {
        int c = Integer.bitCount(array.length) == 1 ? sizeClass(array.length) : -1;
        if (c < 0) {
            return; // not one of ours (or below the pool's sizes): the collector takes it
        }
        if (retained.addAndGet(array.length) > retainedBytes) {
            retained.addAndGet(-array.length);
            return;
        }
        free[c].offerFirst(array); // the most recently used array is the likeliest to be in cache
    }

    /** Bytes of arrays held for reuse. */
    public long retainedBytes() {
        return retained.get();
    }

    /** Takes answered with a returned array. */
    public long reused() {
        return reused.get();
    }

    /** The size class holding {@code bytes}, or -1 when the pool does not serve that size. */
    private static int sizeClass(int bytes) {
        if (bytes < MIN_BYTES || bytes > 1 << 30) {
            return -1;
        }
        int rounded = Integer.bitCount(bytes) == 1 ? bytes : Integer.highestOneBit(bytes) << 1;
        return Integer.numberOfTrailingZeros(rounded) - Integer.numberOfTrailingZeros(MIN_BYTES);
    }

    private static int classBytes(int c) {
        return MIN_BYTES << c;
    }
}
