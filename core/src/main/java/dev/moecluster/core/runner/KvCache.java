package dev.moecluster.core.runner;

import java.util.Arrays;

/**
 * The keys and values one sequence has produced so far, per layer, in f32 (after RoPE and any
 * q/k norm, as attention reads them). Positions are {@code 0 .. length() - 1}; the next token
 * processed gets position {@link #length()}. Memory grows on demand up to {@link #capacity()}.
 * Not thread-safe: a cache belongs to one sequence and is used by one forward call at a time.
 */
public final class KvCache {
    private final DecoderModel owner;
    private final int kvDim;
    private final int capacity;
    private final float[][] keys;
    private final float[][] values;
    private int length;

    KvCache(DecoderModel owner, int layers, int kvDim, int capacity) {
        if (capacity <= 0) {
            throw new IllegalArgumentException("KV cache capacity must be positive, got " + capacity);
        }
        this.owner = owner;
        this.kvDim = kvDim;
        this.capacity = capacity;
        this.keys = new float[layers][0];
        this.values = new float[layers][0];
    }

    /** Tokens stored, which is also the position of the next token. */
    public int length() {
        return length;
    }

    /** The most tokens this cache can hold. */
    public int capacity() {
        return capacity;
    }

    public int remaining() {
        return capacity - length;
    }

    /** Bytes of key/value storage currently allocated. */
    public long allocatedBytes() {
        long total = 0;
        for (int l = 0; l < keys.length; l++) {
            total += 4L * (keys[l].length + values[l].length);
        }
        return total;
    }

    /** Forgets every token, keeping the memory, so the cache can serve a new sequence. */
    public void clear() {
        length = 0;
    }

    DecoderModel owner() {
        return owner;
    }

    /** Makes room for positions up to {@code tokens - 1}, growing geometrically. */
    void reserve(int tokens) {
        if (tokens > capacity) {
            throw new IllegalArgumentException("sequence of " + tokens + " tokens exceeds the KV cache capacity of "
                    + capacity);
        }
        int need = tokens * kvDim;
        for (int l = 0; l < keys.length; l++) {
            if (keys[l].length < need) {
                int size = (int) Math.min((long) capacity * kvDim, Math.max(need, 2L * keys[l].length));
                keys[l] = Arrays.copyOf(keys[l], size);
                values[l] = Arrays.copyOf(values[l], size);
            }
        }
    }

    float[] keys(int layer) {
        return keys[layer];
    }

    float[] values(int layer) {
        return values[layer];
    }

    /** Commits {@code tokens} new positions whose keys and values have been written. */
    void advance(int tokens) {
        length += tokens;
    }
}
