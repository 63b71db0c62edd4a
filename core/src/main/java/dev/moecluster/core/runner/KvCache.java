package dev.moecluster.core.runner;

import dev.moecluster.core.tensor.Numerics;
import java.util.Arrays;

/**
 * One sequence's keys and values (after RoPE and any q/k norm, as attention reads them) in blocks
 * of a {@link KvBlockPool}, found through its block table: position {@code p} lives in block
 * {@code table[p / blockTokens]} at slot {@code p % blockTokens}. Within a block, layer {@code l}'s
 * keys for slot {@code s} start at {@code ((2l) * blockTokens + s) * kvDim} and its values at
 * {@code ((2l + 1) * blockTokens + s) * kvDim}, kv head after kv head. Positions are
 * {@code 0 .. length() - 1}; the next token processed gets position {@link #length()}. Blocks are
 * drawn as the sequence grows and go back to the pool on {@link #release()}. Not thread-safe: a
 * cache belongs to one sequence and is used by one forward call at a time.
 */
public final class KvCache {
    private final DecoderModel owner;
    private final KvBlockPool pool;
    private final int capacity;
    private final int reservedBlocks;
    private final int blockTokens;
    private final int kvDim;
    private int[] table = new int[0];
    private Object[] blocks = new Object[0];
    private int length;
    private boolean released;

    KvCache(DecoderModel owner, KvBlockPool pool, int capacity, int reservedBlocks) {
        this.owner = owner;
        this.pool = pool;
        this.capacity = capacity;
        this.reservedBlocks = reservedBlocks;
        this.blockTokens = pool.blockTokens();
        this.kvDim = pool.kvDim();
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

    /** The pool this cache draws its blocks from. */
    public KvBlockPool pool() {
        return pool;
    }

    /** The physical blocks holding positions {@code 0 .. length() - 1} and any drawn ahead, in order. */
    public int[] blockTable() {
        return table.clone();
    }

    /** Bytes of key/value storage in the blocks this sequence holds. */
    public long allocatedBytes() {
        return table.length * pool.bytesPerBlock();
    }

    /** Forgets every token, keeping the blocks, so the cache can serve a new sequence. */
    public void clear() {
        length = 0;
    }

    /** Hands every block and the reservation back to the pool; the cache cannot be used afterwards. */
    public void release() {
        if (released) {
            return;
        }
        released = true;
        for (int id : table) {
            pool.free(id);
        }
        table = new int[0];
        blocks = new Object[0];
        length = 0;
        pool.unreserve(reservedBlocks);
    }

    DecoderModel owner() {
        return owner;
    }

    /** Draws blocks so positions up to {@code tokens - 1} have a place. */
    void reserve(int tokens) {
        if (released) {
            throw new IllegalStateException("this KV cache was released");
        }
        if (tokens > capacity) {
            throw new IllegalArgumentException("sequence of " + tokens + " tokens exceeds the KV cache capacity of "
                    + capacity);
        }
        int need = pool.blocksFor(tokens);
        if (need <= table.length) {
            return;
        }
        int had = table.length;
        table = Arrays.copyOf(table, need);
        blocks = Arrays.copyOf(blocks, need);
        for (int b = had; b < need; b++) {
            table[b] = pool.allocate();
            blocks[b] = pool.storage(table[b]);
        }
    }

    /** Stores one position's keys and values ({@code kvDim} each) of {@code layer}. */
    void write(int layer, int position, float[] keys, int keyOffset, float[] values, int valueOffset) {
        Object block = blocks[position / blockTokens];
        int k = keyBase(layer, position);
        int v = k + blockTokens * kvDim;
        if (block instanceof float[] f) {
            System.arraycopy(keys, keyOffset, f, k, kvDim);
            System.arraycopy(values, valueOffset, f, v, kvDim);
        } else {
            short[] s = (short[]) block;
            for (int i = 0; i < kvDim; i++) {
                s[k + i] = Numerics.toBf16(keys[keyOffset + i]);
                s[v + i] = Numerics.toBf16(values[valueOffset + i]);
            }
        }
    }

    /** {@code q[qOffset, + d) · key}, the key of {@code layer} at {@code position} starting {@code kvOffset} into the row. */
    float dotKey(int layer, int position, int kvOffset, float[] q, int qOffset, int d) {
        Object block = blocks[position / blockTokens];
        int k = keyBase(layer, position) + kvOffset;
        float dot = 0;
        if (block instanceof float[] f) {
            for (int i = 0; i < d; i++) {
                dot += q[qOffset + i] * f[k + i];
            }
        } else {
            short[] s = (short[]) block;
            for (int i = 0; i < d; i++) {
                dot += q[qOffset + i] * Float.intBitsToFloat(s[k + i] << 16);
            }
        }
        return dot;
    }

    /** {@code out[outOffset, + d) += weight * value}, the value of {@code layer} at {@code position} from {@code kvOffset}. */
    void addValue(int layer, int position, int kvOffset, float weight, float[] out, int outOffset, int d) {
        Object block = blocks[position / blockTokens];
        int v = keyBase(layer, position) + blockTokens * kvDim + kvOffset;
        if (block instanceof float[] f) {
            for (int i = 0; i < d; i++) {
                out[outOffset + i] += weight * f[v + i];
            }
        } else {
            short[] s = (short[]) block;
            for (int i = 0; i < d; i++) {
                out[outOffset + i] += weight * Float.intBitsToFloat(s[v + i] << 16);
            }
        }
    }

    /** The keys of {@code layer} at {@code position} ({@code kvDim} values), widened to f32. */
    float[] key(int layer, int position) {
        float[] out = new float[kvDim];
        for (int i = 0; i < kvDim; i++) {
            out[i] = element(layer, position, i, false);
        }
        return out;
    }

    /** The values of {@code layer} at {@code position} ({@code kvDim} values), widened to f32. */
    float[] value(int layer, int position) {
        float[] out = new float[kvDim];
        for (int i = 0; i < kvDim; i++) {
            out[i] = element(layer, position, i, true);
        }
        return out;
    }

    private float element(int layer, int position, int i, boolean value) {
        Object block = blocks[position / blockTokens];
        int at = keyBase(layer, position) + (value ? blockTokens * kvDim : 0) + i;
        return block instanceof float[] f ? f[at] : Numerics.fromBf16(((short[]) block)[at]);
    }

    private int keyBase(int layer, int position) {
        return (2 * layer * blockTokens + position % blockTokens) * kvDim;
    }

    /** Commits {@code tokens} new positions whose keys and values have been written. */
    void advance(int tokens) {
        length += tokens;
    }
}
