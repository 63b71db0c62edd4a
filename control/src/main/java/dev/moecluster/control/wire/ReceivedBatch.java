package dev.moecluster.control.wire;

import static java.util.Objects.requireNonNull;

import dev.moecluster.proto.ExpertBatch;
import java.lang.foreign.MemorySegment;
import java.util.concurrent.atomic.AtomicBoolean;

/**
 * An {@link ExpertBatch} as a worker receives it: parsed with aliasing over a buffer from the
 * worker's {@link BufferPool}, so its activations are a view of that buffer (pinned memory on a
 * {@code cuda} worker, which the device uploads from directly). Whoever handles the batch calls
 * {@link #release} once nothing reads the activations any more (the batch answered or refused,
 * every slice computed or dropped); after that the buffer holds another message.
 */
public final class ReceivedBatch {
    private final ExpertBatch batch;
    private final BufferPool pool;
    private final MemorySegment buffer;
    private final AtomicBoolean released = new AtomicBoolean();

    ReceivedBatch(ExpertBatch batch, BufferPool pool, MemorySegment buffer) {
        this.batch = requireNonNull(batch, "batch is null");
        this.pool = requireNonNull(pool, "pool is null");
        this.buffer = requireNonNull(buffer, "buffer is null");
    }

    public ExpertBatch batch() {
        return batch;
    }

    /** Gives the buffer back to the pool; later calls do nothing. */
    public void release() {
        if (released.compareAndSet(false, true)) {
            pool.give(buffer);
        }
    }
}
