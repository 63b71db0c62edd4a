package dev.moecluster.cli;

import java.util.concurrent.atomic.AtomicReference;
import java.util.logging.Level;
import java.util.logging.Logger;
import sun.misc.Signal;

/**
 * SIGTERM for a server command (what Kubernetes and {@code Process.destroy()} send): runs the
 * component's graceful stop on its own thread, then exits with status 0. The signal is handled here
 * rather than in a shutdown hook because the JDK resets java.util.logging in its own hook, which
 * would silence a drain's progress lines, and a hook cannot choose the exit status (143). Other exits
 * (Ctrl-C, errors) still close the component from a shutdown hook. {@code sun.misc.Signal} lives in
 * {@code jdk.unsupported}, which JEP 260 keeps exported for exactly this; javac warns about it anyway.
 */
final class Sigterm {
    private static final Logger LOG = Logger.getLogger(Sigterm.class.getName());

    private final AtomicReference<Thread> stopping = new AtomicReference<>();

    private Sigterm() {}

    /**
     * @param component name in log lines
     * @param gracefulStop runs once, on the first SIGTERM; returns when the component is closed
     * @param close runs on any other exit
     */
    static Sigterm handle(String component, Runnable gracefulStop, Runnable close) {
        Sigterm sigterm = new Sigterm();
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            if (sigterm.stopping.get() == null) { // a graceful stop closes the component itself
                close.run();
            }
        }, "moe-shutdown"));
        try {
            Signal.handle(new Signal("TERM"), signal -> sigterm.stop(component, gracefulStop));
        } catch (IllegalArgumentException e) {
            // -Xrs, or the signal is reserved: the shutdown hook still closes, without the graceful stop
            LOG.warning(component + " cannot handle SIGTERM (" + e.getMessage() + "); it will stop without draining");
        }
        return sigterm;
    }

    private void stop(String component, Runnable gracefulStop) {
        Thread thread = Thread.ofPlatform().name("moe-sigterm").unstarted(() -> {
            try {
                gracefulStop.run();
            } catch (RuntimeException e) {
                LOG.log(Level.WARNING, component + " graceful stop failed", e);
            } finally {
                System.exit(0);
            }
        });
        if (stopping.compareAndSet(null, thread)) {
            LOG.info(component + " got SIGTERM: stopping gracefully");
            thread.start();
        } else {
            LOG.info(component + " got SIGTERM again: already stopping");
        }
    }

    /** After the component stopped serving: waits for a graceful stop under way to finish (it exits the JVM). */
    void awaitGracefulStop() throws InterruptedException {
        Thread thread = stopping.get();
        if (thread != null) {
            thread.join();
        }
    }
}
