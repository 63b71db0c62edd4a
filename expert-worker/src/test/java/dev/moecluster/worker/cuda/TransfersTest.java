package dev.moecluster.worker.cuda;

import static org.assertj.core.api.Assertions.assertThat;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import org.junit.jupiter.api.Test;

class TransfersTest {
    @Test
    void adjacentRangesOfOneBufferMergeIntoOneCopy() {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment message = arena.allocate(4096);
            String received = "received";
            Transfers<String> t = new Transfers<>();
            // a batch's slices, expert after expert, back to back in the message and on the device
            t.add(received, message.asSlice(100, 512), 0);
            t.add(received, message.asSlice(612, 1024), 512);
            t.add(received, message.asSlice(1636, 0), 1536); // an expert with no rows
            t.add(received, message.asSlice(1636, 256), 1536);
            assertThat(t.copies()).containsExactly(new Transfers.Copy<>(received, message.address() + 100, 0, 1792));
        }
    }

    @Test
    void rangesApartOnEitherSideOrInAnotherBufferAreCopiesOfTheirOwn() {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment first = arena.allocate(4096);
            MemorySegment second = arena.allocate(4096);
            String a = "first";
            String b = "second";
            Transfers<String> t = new Transfers<>();
            t.add(a, first.asSlice(0, 512), 0);
            t.add(a, first.asSlice(1024, 512), 512); // a gap on the host: rows of another expert in between
            t.add(a, first.asSlice(1536, 512), 2048); // a gap on the device: another batch's rows of this expert
            t.add(b, second.asSlice(0, 512), 2560); // another buffer, even were it adjacent
            // the same buffer object is required: an address that happens to follow is not enough
            t.add(a, second.asSlice(512, 512), 3072);
            assertThat(t.copies()).containsExactly(
                    new Transfers.Copy<>(a, first.address(), 0, 512),
                    new Transfers.Copy<>(a, first.address() + 1024, 512, 512),
                    new Transfers.Copy<>(a, first.address() + 1536, 2048, 512),
                    new Transfers.Copy<>(b, second.address(), 2560, 512),
                    new Transfers.Copy<>(a, second.address() + 512, 3072, 512));
        }
    }
}
