package dev.moecluster.cli;

import dev.moecluster.worker.Round;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

/**
 * A cpu backend that, once armed, holds the first computation until released: lets a test kill or
 * stall a worker while a request is provably in flight on it.
 */
final class GatedBackend extends ForwardingBackend {
    private final CountDownLatch entered = new CountDownLatch(1);
    private final CountDownLatch release = new CountDownLatch(1);
    private volatile boolean armed;

    void arm() {
        armed = true;
    }

    boolean awaitEntered() throws InterruptedException {
        return entered.await(30, TimeUnit.SECONDS);
    }

    void release() {
        release.countDown();
    }

    @Override
    public PendingRound submit(Round round) {
        if (armed) {
            entered.countDown();
            try {
                release.await(60, TimeUnit.SECONDS);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }
        return cpu.submit(round);
    }
}
