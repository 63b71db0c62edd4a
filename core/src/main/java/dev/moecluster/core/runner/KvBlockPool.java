package dev.moecluster.core.runner;

import static java.util.Objects.requireNonNull;

import dev.moecluster.core.tensor.DType;
import java.util.BitSet;

/**
 * Fixed-size KV blocks ({@link #blockTokens()} positions of every layer's keys and values) shared by
 * the sequences of one model, the paged layout vLLM introduced: a sequence holds a block table, so
 * sequences are admitted by free blocks and a finished one hands its blocks back at once. Admission
 * reserves a sequence's worst case ({@link #tryReserve}); blocks are then drawn as it grows, so a
 * reserved sequence never runs out. Block storage is allocated on first use and reused after that.
 * Thread-safe: concurrent micro-batches draw from one pool.
 */
public final class KvBlockPool {
    /** Positions per block, as vLLM's default on GPUs. */
    public static final int DEFAULT_BLOCK_TOKENS = 16;

    private final DecoderModel owner;
    private final DType dtype;
    private final int layers;
    private final int kvDim;
    private final int blockTokens;
    private final int totalBlocks;
    private final BitSet used = new BitSet();
    private final Object[] storage;
    private int reserved;

    KvBlockPool(DecoderModel owner, DType dtype, int layers, int kvDim, int blockTokens, int totalBlocks) {
        this.owner = owner;
        this.dtype = requireNonNull(dtype, "dtype is null");
        if (dtype != DType.F32 && dtype != DType.BF16) {
            throw new IllegalArgumentException("the KV cache stores f32 or bf16, not " + dtype);
        }
        if (blockTokens <= 0 || totalBlocks <= 0) {
            throw new IllegalArgumentException("a KV block pool needs positive block size and count, got "
                    + blockTokens + " tokens x " + totalBlocks + " blocks");
        }
        this.layers = layers;
        this.kvDim = kvDim;
        this.blockTokens = blockTokens;
        this.totalBlocks = totalBlocks;
        this.storage = new Object[totalBlocks];
    }

    /** The element type keys and values are stored in; attention widens bf16 to f32 as it reads. */
    public DType dtype() {
        return dtype;
    }

    public int blockTokens() {
        return blockTokens;
    }

    public int totalBlocks() {
        return totalBlocks;
    }

    /** Blocks promised to sequences (drawn or still to draw). */
    public synchronized int reservedBlocks() {
        return reserved;
    }

    /** Blocks no sequence has reserved: what admission can still hand out. */
    public synchronized int unreservedBlocks() {
        return totalBlocks - reserved;
    }

    /** Blocks currently holding some sequence's keys and values. */
    public synchronized int usedBlocks() {
        return used.cardinality();
    }

    /** Bytes of keys and values in one block, every layer. */
    public long bytesPerBlock() {
        return (long) elementsPerBlock() * dtype.byteSize();
    }

    /** Blocks a sequence of {@code tokens} positions occupies. */
    public int blocksFor(int tokens) {
        return (int) ((tokens + (long) blockTokens - 1) / blockTokens);
    }

    /**
     * An empty cache for a sequence of up to {@code maxTokens} positions, with that many positions'
     * blocks reserved; null when the pool cannot promise them now.
     */
    public KvCache tryNewCache(int maxTokens) {
        if (maxTokens <= 0) {
            throw new IllegalArgumentException("KV cache capacity must be positive, got " + maxTokens);
        }
        int blocks = blocksFor(maxTokens);
        if (!tryReserve(blocks)) {
            return null;
        }
        return new KvCache(owner, this, maxTokens, blocks);
    }

    /** As {@link #tryNewCache}, failing when the blocks are not free. */
    public KvCache newCache(int maxTokens) {
        KvCache cache = tryNewCache(maxTokens);
        if (cache == null) {
            throw new IllegalStateException("a sequence of " + maxTokens + " tokens needs " + blocksFor(maxTokens)
                    + " KV blocks; " + unreservedBlocks() + " of " + totalBlocks + " are free");
        }
        return cache;
    }

    private synchronized boolean tryReserve(int blocks) {
        if (blocks > totalBlocks - reserved) {
            return false;
        }
        reserved += blocks;
        return true;
    }

    synchronized void unreserve(int blocks) {
        reserved -= blocks;
    }

    /** The lowest free block, its storage allocated if this is its first use. */
    synchronized int allocate() {
        int id = used.nextClearBit(0);
        if (id >= totalBlocks) {
            throw new IllegalStateException("every KV block is in use (" + totalBlocks + ")");
        }
        used.set(id);
        if (storage[id] == null) {
            storage[id] = dtype == DType.F32 ? new float[elementsPerBlock()] : new short[elementsPerBlock()];
        }
        return id;
    }

    /** The storage of block {@code id}: f32 {@code float[]} or bf16 {@code short[]}, laid out as {@link KvCache} says. */
    synchronized Object storage(int id) {
        return storage[id];
    }

    synchronized void free(int id) {
        if (!used.get(id)) {
            throw new IllegalStateException("KV block " + id + " is freed twice");
        }
        used.clear(id);
    }

    int layers() {
        return layers;
    }

    int kvDim() {
        return kvDim;
    }

    DecoderModel owner() {
        return owner;
    }

    private int elementsPerBlock() {
        return 2 * layers * blockTokens * kvDim;
    }
}
