package dev.moecluster.control.wire;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;

class BufferPoolTest {
    /** Counts what it allocates and frees, as a pinned allocator would have to. */
    private static final class CountingAllocator implements HostAllocator {
        final List<Long> allocated = new ArrayList<>();
        final List<MemorySegment> freed = new ArrayList<>();

        @Override
        public MemorySegment allocate(long bytes) {
            allocated.add(bytes);
            return Arena.ofAuto().allocate(bytes, 64);
        }

        @Override
        public void free(MemorySegment segment) {
            freed.add(segment);
        }
    }

    @Test
    void buffersComeInPowerOfTwoSizesAndAreReused() {
        CountingAllocator allocator = new CountingAllocator();
        BufferPool pool = new BufferPool(allocator, 1 << 30);
        MemorySegment a = pool.take(3_000_000);
        assertThat(a.byteSize()).isEqualTo(4 << 20);
        assertThat(a.isNative()).isTrue();
        assertThat(a.address() % 64).isZero();
        assertThat(pool.take(1).byteSize()).isEqualTo(BufferPool.MIN_BYTES);
        assertThat(pool.take(0).byteSize()).isEqualTo(BufferPool.MIN_BYTES);
        assertThat(pool.take(BufferPool.MIN_BYTES + 1).byteSize()).isEqualTo(2 * BufferPool.MIN_BYTES);
        pool.give(a);
        assertThat(pool.retainedBytes()).isEqualTo(4 << 20);
        assertThat(pool.outstanding()).isEqualTo(3);
        assertThat(pool.outstandingBytes()).isEqualTo(2 * 4096 + 8192);
        assertThat(pool.take(2_100_000)).isSameAs(a); // same class: 2^21 < 2.1 MB <= 2^22
        assertThat(pool.reused()).isEqualTo(1);
        assertThat(pool.retainedBytes()).isZero();
        assertThat(pool.take(3_000_000)).isNotSameAs(a).satisfies(s -> assertThat(s.byteSize()).isEqualTo(4 << 20));
        assertThat(allocator.allocated).containsExactly(4L << 20, 4096L, 4096L, 8192L, 4L << 20);
        assertThat(allocator.freed).isEmpty();
        assertThatThrownBy(() -> pool.take(-1)).isInstanceOf(IllegalArgumentException.class);
    }

    @Test
    void keepsNoMoreThanItsLimitAndFreesTheRest() {
        CountingAllocator allocator = new CountingAllocator();
        BufferPool pool = new BufferPool(allocator, 3L << 20);
        MemorySegment a = pool.take(1 << 20);
        MemorySegment b = pool.take(1 << 20);
        MemorySegment c = pool.take(2 << 20);
        pool.give(a);
        pool.give(b);
        pool.give(c); // 4 MiB would pass the 3 MiB limit: freed
        assertThat(pool.retainedBytes()).isEqualTo(2L << 20);
        assertThat(allocator.freed).containsExactly(c);
        assertThat(pool.take(2 << 20)).isNotSameAs(c);
        assertThat(pool.take(1 << 20)).isIn(a, b);
    }

    @Test
    void buffersNotOfThePoolsSizesAndAllAfterCloseAreFreed() {
        CountingAllocator allocator = new CountingAllocator();
        BufferPool pool = new BufferPool(allocator, 1 << 30);
        MemorySegment kept = pool.take(5000);
        MemorySegment outstanding = pool.take(5000);
        pool.give(kept);
        MemorySegment odd = Arena.ofAuto().allocate(3000);
        pool.give(odd); // not a pool size
        assertThat(allocator.freed).containsExactly(odd);
        pool.close();
        assertThat(allocator.freed).containsExactly(odd, kept);
        assertThat(pool.retainedBytes()).isZero();
        pool.give(outstanding); // given back after close: freed at once
        assertThat(allocator.freed).containsExactly(odd, kept, outstanding);
        assertThat(pool.retainedBytes()).isZero();
    }
}
