package dev.moecluster.coordinator;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import org.junit.jupiter.api.Test;

class RegistryWatchTest {
    private static final long TIMEOUT = 5_000;
    private static final long PAUSE = 1_000;
    private static final long TICK = 250;

    /** Looks every tick from {@code from} to {@code to} inclusive; returns the largest gap any look reported. */
    private static long lookEveryTick(RegistryWatch w, long from, long to) {
        long largest = 0;
        for (long t = from; t <= to; t += TICK) {
            largest = Math.max(largest, w.look(t));
        }
        return largest;
    }

    @Test
    void aNewLeaderDeclaresNoneDeadUntilItHasWatchedForAHeartbeatTimeout() {
        RegistryWatch w = new RegistryWatch(TIMEOUT, PAUSE);
        assertThat(w.staleMeansDead(100_000)).as("before the first look").isFalse();
        assertThat(lookEveryTick(w, 10_000, 15_000)).isZero();
        assertThat(w.staleMeansDead(15_000)).as("exactly a timeout after the first look").isFalse();
        w.look(15_250);
        assertThat(w.staleMeansDead(15_250)).isTrue();
    }

    @Test
    void aPauseInTheLooksStartsTheWatchOver() {
        RegistryWatch w = new RegistryWatch(TIMEOUT, PAUSE);
        lookEveryTick(w, 0, 6_000);
        assertThat(w.staleMeansDead(6_000)).isTrue();
        // the next look comes 10 s later: a coordinator was out of reach and the read waited for it
        assertThat(w.look(16_000)).isEqualTo(10_000);
        assertThat(w.staleMeansDead(16_000)).isFalse();
        assertThat(lookEveryTick(w, 16_250, 21_000)).isZero();
        assertThat(w.staleMeansDead(21_000)).isFalse();
        w.look(21_250);
        assertThat(w.staleMeansDead(21_250)).isTrue();
    }

    @Test
    void aGapUpToThePauseIsStillWatching() {
        RegistryWatch w = new RegistryWatch(TIMEOUT, PAUSE);
        for (long t = 0; t <= 6 * PAUSE; t += PAUSE) {
            assertThat(w.look(t)).as("slow ticks, one pause apart, at %d", t).isZero();
        }
        assertThat(w.staleMeansDead(6 * PAUSE)).isTrue();
        assertThat(w.look(7 * PAUSE + 1)).isEqualTo(PAUSE + 1);
        assertThat(w.staleMeansDead(7 * PAUSE + 1)).isFalse();
    }

    @Test
    void leadingAgainStartsFromNothing() {
        RegistryWatch w = new RegistryWatch(TIMEOUT, PAUSE);
        lookEveryTick(w, 0, 6_000);
        w.stop();
        assertThat(w.staleMeansDead(6_250)).isFalse();
        assertThat(w.look(6_250)).as("a fresh start is no pause").isZero();
        assertThat(w.staleMeansDead(11_250)).isFalse();
        assertThat(w.staleMeansDead(11_251)).isTrue();
    }

    @Test
    void rejectsNonPositiveTimeouts() {
        assertThatThrownBy(() -> new RegistryWatch(0, PAUSE)).isInstanceOf(IllegalArgumentException.class);
        assertThatThrownBy(() -> new RegistryWatch(TIMEOUT, -1)).isInstanceOf(IllegalArgumentException.class);
    }
}
