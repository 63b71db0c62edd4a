package dev.moecluster.worker.cuda;

import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;

/**
 * The copies that move a round's rows between host memory and one device buffer: each row range at
 * its byte offset in the device buffer, from (or to) where it lies on the host. Ranges adjacent on
 * both sides and in the same pinned buffer merge into one copy, so a round of one batch (its slices
 * lie back to back in the received message, expert after expert, as the device wants them) is one copy.
 * Pure bookkeeping; {@link CudaBackend} issues the copies.
 *
 * @param <B> what a host range lies in (a pinned buffer); copies never span two
 */
final class Transfers<B> {
    /** {@code bytes} bytes between host address {@code hostAddress}, within {@code buffer}, and the device buffer at {@code deviceOffset}. */
    record Copy<B>(B buffer, long hostAddress, long deviceOffset, long bytes) {}

    private final List<Copy<B>> copies = new ArrayList<>();

    /** Adds the range {@code host}, which lies in {@code buffer}, at {@code deviceOffset}; empty ranges are no copy. */
    void add(B buffer, MemorySegment host, long deviceOffset) {
        long bytes = host.byteSize();
        if (bytes == 0) {
            return;
        }
        if (!copies.isEmpty()) {
            Copy<B> last = copies.getLast();
            if (last.buffer() == buffer && last.hostAddress() + last.bytes() == host.address()
                    && last.deviceOffset() + last.bytes() == deviceOffset) {
                copies.set(copies.size() - 1, new Copy<>(buffer, last.hostAddress(), last.deviceOffset(), last.bytes() + bytes));
                return;
            }
        }
        copies.add(new Copy<>(buffer, host.address(), deviceOffset, bytes));
    }

    List<Copy<B>> copies() {
        return List.copyOf(copies);
    }
}
