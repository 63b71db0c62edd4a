package dev.moecluster.control.wire;

import static java.util.Objects.requireNonNull;

import dev.moecluster.proto.ExpertBatch;
import java.util.concurrent.atomic.AtomicBoolean;

/**
 * An {@link ExpertBatch} as a worker receives it: parsed with aliasing over an array from the
 * worker's {@link ArrayPool}, so its activations are a view of that array. Whoever handles the
 * batch calls {@link #release} once nothing reads the activations any more (the batch answered or
 * refused, every slice computed or dropped); after that the array holds another message.
 */
public final class ReceivedBatch {
    private final ExpertBatch batch;
    private final ArrayPool pool;
    private final byte[] buffer;
    private final AtomicBoolean released = new AtomicBoolean();

    ReceivedBatch(ExpertBatch batch, ArrayPool pool, byte[] buffer) {
        this.batch = requireNonNull(batch, "batch is null");
        this.pool = requireNonNull(pool, "pool is null");
        this.buffer = requireNonNull(buffer, "buffer is null");
    }

    public ExpertBatch batch() {
        return batch;
    }

    /** Gives the array back to the pool; later calls do nothing. */
    public void release() {
        if (released.compareAndSet(false, true)) {
            pool.give(buffer);
        }
    }
}
