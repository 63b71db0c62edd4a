package dev.moecluster.control.wire;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import org.junit.jupiter.api.Test;

class ArrayPoolTest {
    @Test
    void largeArraysComeInPowerOfTwoSizesAndAreReused() {
        ArrayPool pool = new ArrayPool(1 << 30);
        byte[] a = pool.take(3_000_000);
        assertThat(a).hasSize(4 << 20);
        assertThat(pool.take(ArrayPool.MIN_BYTES)).hasSize(ArrayPool.MIN_BYTES);
        pool.give(a);
        assertThat(pool.retainedBytes()).isEqualTo(4 << 20);
        assertThat(pool.take(2_100_000)).isSameAs(a); // same class: 2^21 < 2.1 MB <= 2^22
        assertThat(pool.reused()).isEqualTo(1);
        assertThat(pool.retainedBytes()).isZero();
        assertThat(pool.take(3_000_000)).isNotSameAs(a).hasSize(4 << 20);
    }

    @Test
    void smallArraysAreExactAndNotKept() {
        ArrayPool pool = new ArrayPool(1 << 30);
        byte[] small = pool.take(1000);
        assertThat(small).hasSize(1000);
        pool.give(small);
        pool.give(new byte[100_000]); // not a pool size: left to the collector
        assertThat(pool.retainedBytes()).isZero();
        assertThat(pool.take(1000)).isNotSameAs(small);
        assertThat(pool.take(0)).isEmpty();
        assertThatThrownBy(() -> pool.take(-1)).isInstanceOf(IllegalArgumentException.class);
    }

    @Test
    void keepsNoMoreThanItsLimit() {
        ArrayPool pool = new ArrayPool(3L << 20);
        byte[] a = pool.take(1 << 20);
        byte[] b = pool.take(1 << 20);
        byte[] c = pool.take(2 << 20);
        pool.give(a);
        pool.give(b);
        pool.give(c); // 4 MiB would pass the 3 MiB limit: dropped
        assertThat(pool.retainedBytes()).isEqualTo(2L << 20);
        assertThat(pool.take(2 << 20)).isNotSameAs(c);
        assertThat(pool.take(1 << 20)).isIn(a, b);
    }
}
