package dev.moecluster.worker;

import static java.util.Objects.requireNonNull;

import dev.moecluster.core.moe.ExpertWeights;
import dev.moecluster.core.tensor.RowBatch;
import io.prometheus.metrics.core.metrics.Histogram;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.LongAdder;
import java.util.concurrent.locks.ReentrantLock;
import java.util.function.Consumer;
import java.util.logging.Level;
import java.util.logging.Logger;

/**
 * Pools rows for the same (layer, expert) arriving from many routers and batches into one round of
 * the backend, so an expert's weights are streamed once per round instead of once per sender.
 *
 * <p>One compute thread takes work as it arrives. Everything queued by the time it is free joins the
 * next round (natural batching: under load, rounds grow by themselves); a positive {@code window}
 * additionally waits that long after the first item for more. A backend that enqueues rounds on a
 * device gets the next round submitted while the previous one computes, and the previous one's
 * results are delivered as soon as it is done.
 *
 * <p>A small batch that finds the compute thread idle and nothing queued is computed on the thread
 * that submits it (the gRPC thread that parsed it), when the backend may run on any thread: with
 * nothing to coalesce it with, waking the compute thread only adds a thread hand-off to its latency.
 */
final class BatchCoalescer implements AutoCloseable {
    private static final Logger LOG = Logger.getLogger(BatchCoalescer.class.getName());

    /**
     * Rows of one expert from one batch, in the wire dtype: {@code input} is a view of the received
     * message, {@code output} of the result being built; exactly one of the callbacks runs.
     */
    record Work(int layer, int expert, ExpertWeights weights, RowBatch input, RowBatch output,
            Runnable onDone, Consumer<Throwable> onError, java.util.function.BooleanSupplier withdrawn) {}

    /** A round handed to the backend and the work it answers. */
    private record Submitted(List<Work> work, ExpertBackend.PendingRound pending, long started) {}

    private final ExpertBackend backend;
    private final long windowNanos;
    /**
     * Multiply-adds up to which a batch may run on its submitting thread: about a millisecond of one
     * core, so a stream's next batches (serialised behind it on that thread) wait no longer than that.
     */
    static final long INLINE_MAX_MACS = 1L << 25;

    private final BlockingQueue<Work> queue = new LinkedBlockingQueue<>();
    /** Held by whoever runs a round: the compute thread (while it has one in flight) or a submitter. */
    private final ReentrantLock computing = new ReentrantLock();
    private final boolean inlineAllowed;
    private final AtomicLong inlineRounds = new AtomicLong();
    private final Thread thread;
    private final AtomicLong rounds = new AtomicLong();
    private final AtomicLong calls = new AtomicLong();
    private final AtomicLong rowsComputed = new AtomicLong();
    /** Wall time some round was on the backend (overlapping rounds counted once), for the live rows/s. */
    private final AtomicLong busyNanos = new AtomicLong();
    /** When the last round finished; guarded by {@link #computing}. */
    private long lastFinishedNanos;
    private final Map<Long, LongAdder> rowsByExpert = new ConcurrentHashMap<>();
    private final Histogram rowsPerCall = Histogram.builder()
            .name("moe_worker_backend_call_rows")
            .help("Rows per expert per backend round after coalescing")
            .classicOnly()
            .classicExponentialUpperBounds(1, 2, 14)
            .build();
    private final Histogram computeSeconds = Histogram.builder()
            .name("moe_worker_compute_seconds")
            .help("Time of one backend round, from submit to results")
            .classicOnly()
            .classicUpperBounds(.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1)
            .build();
    private volatile boolean running = true;

    BatchCoalescer(ExpertBackend backend, Duration window) {
        this.backend = requireNonNull(backend, "backend is null");
        this.windowNanos = window.toNanos();
        // A coalescing window asks for rounds to wait for company, so none runs alone on arrival.
        this.inlineAllowed = backend.computesOnAnyThread() && windowNanos == 0;
        this.thread = Thread.ofPlatform().name("moe-expert-compute").daemon().start(this::run);
    }

    /** Queues the slices of one batch, or computes them at once on this thread (see the class comment). */
    void submit(List<Work> batch) {
        if (!running) {
            for (Work w : batch) {
                w.onError().accept(new IllegalStateException("worker is shutting down"));
            }
            return;
        }
        if (inlineAllowed && queue.isEmpty() && macs(batch) <= INLINE_MAX_MACS && computing.tryLock()) {
            try {
                if (queue.isEmpty()) {
                    inlineRounds.incrementAndGet();
                    Submitted s = start(batch);
                    if (s != null) {
                        finish(s);
                    }
                    return;
                }
            } finally {
                computing.unlock();
            }
        }
        queue.addAll(batch);
    }

    private static long macs(List<Work> batch) {
        long macs = 0;
        for (Work w : batch) {
            macs += 3L * w.input().rows() * w.weights().hiddenSize() * w.weights().intermediateSize();
        }
        return macs;
    }

    /** Rounds computed on the thread that submitted them rather than the compute thread. */
    long inlineRounds() {
        return inlineRounds.get();
    }

    /** Expert computations so far (one per expert per round) and the rows they computed; rows per call is the coalescing gain. */
    long backendCalls() {
        return calls.get();
    }

    long rowsComputed() {
        return rowsComputed.get();
    }

    /** Nanoseconds some round was on the backend since start: rows computed / this is the live rate. */
    long busyNanos() {
        return busyNanos.get();
    }

    /** Rounds the backend completed. */
    long rounds() {
        return rounds.get();
    }

    /** Rows computed for one expert since start. */
    long rowsComputed(int layer, int expert) {
        LongAdder n = rowsByExpert.get((long) layer << 32 | expert);
        return n == null ? 0 : n.sum();
    }

    /** Expert slices waiting for the compute thread. */
    int queued() {
        return queue.size();
    }

    /** Rows per expert per round; unregistered until the worker's metrics register it. */
    Histogram rowsPerCall() {
        return rowsPerCall;
    }

    /** Seconds per backend round; unregistered until the worker's metrics register it. */
    Histogram computeSeconds() {
        return computeSeconds;
    }

    private void run() {
        Submitted inFlight = null;
        while (running) {
            try {
                // With a round on the device, look for more work without waiting: if none, collect the round.
                Work first = inFlight == null ? queue.poll(100, TimeUnit.MILLISECONDS) : queue.poll();
                if (first == null) {
                    if (inFlight != null) {
                        finish(inFlight);
                        inFlight = null;
                        computing.unlock();
                    }
                    continue;
                }
                List<Work> round = new ArrayList<>();
                round.add(first);
                if (windowNanos > 0) {
                    long deadline = System.nanoTime() + windowNanos;
                    long left;
                    while ((left = deadline - System.nanoTime()) > 0) {
                        Work w = queue.poll(left, TimeUnit.NANOSECONDS);
                        if (w == null) {
                            break;
                        }
                        round.add(w);
                    }
                }
                if (inFlight == null) {
                    computing.lock(); // a submitter may be computing a batch of its own: wait for it
                }
                queue.drainTo(round);
                Submitted next = start(round);
                if (inFlight != null) {
                    finish(inFlight);
                }
                inFlight = null;
                if (next != null && next.pending().done()) {
                    finish(next);
                } else {
                    inFlight = next;
                }
                if (inFlight == null) {
                    computing.unlock();
                }
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                break;
            }
        }
        if (inFlight != null) {
            finish(inFlight);
        }
        if (computing.isHeldByCurrentThread()) {
            computing.unlock();
        }
    }

    /** Hands a round to the backend; null when it failed at once (its work has been failed). */
    private Submitted start(List<Work> queued) {
        // work its sender withdrew while it waited (a hedge answered first) is dropped, not computed
        List<Work> work = new ArrayList<>(queued.size());
        for (Work w : queued) {
            if (w.withdrawn().getAsBoolean()) {
                w.onError().accept(new java.util.concurrent.CancellationException("withdrawn by the router"));
            } else {
                work.add(w);
            }
        }
        if (work.isEmpty()) {
            return null;
        }
        List<Round.Slice> slices = new ArrayList<>(work.size());
        for (Work w : work) {
            slices.add(new Round.Slice(w.weights(), w.input(), w.output()));
        }
        long started = System.nanoTime();
        try {
            return new Submitted(work, backend.submit(new Round(slices)), started);
        } catch (RuntimeException | Error e) {
            fail(work, e);
            return null;
        }
    }

    private void finish(Submitted s) {
        try {
            s.pending().await();
        } catch (RuntimeException | Error e) {
            fail(s.work(), e);
            return;
        }
        long now = System.nanoTime();
        computeSeconds.observe((now - s.started()) / 1e9);
        // A pipelined round submitted while the one before ran counts only from when that one ended.
        busyNanos.addAndGet(now - Math.max(s.started(), lastFinishedNanos));
        lastFinishedNanos = now;
        rounds.incrementAndGet();
        Map<Long, Integer> rowsPerExpert = new LinkedHashMap<>();
        for (Work w : s.work()) {
            rowsPerExpert.merge((long) w.layer() << 32 | w.expert(), w.input().rows(), Integer::sum);
        }
        rowsPerExpert.forEach((key, rows) -> {
            rowsPerCall.observe(rows);
            calls.incrementAndGet();
            rowsComputed.addAndGet(rows);
            rowsByExpert.computeIfAbsent(key, k -> new LongAdder()).add(rows);
        });
        for (Work w : s.work()) {
            w.onDone().run();
        }
    }

    private static void fail(List<Work> work, Throwable e) {
        LOG.log(Level.WARNING, "expert computation failed", e);
        for (Work w : work) {
            w.onError().accept(e);
        }
    }

    @Override
    public void close() {
        running = false;
        thread.interrupt();
        if (Thread.currentThread() != thread) {
            try {
                thread.join(10_000); // a device round in progress finishes; nothing touches a batch's buffers after this
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }
        List<Work> left = new ArrayList<>();
        queue.drainTo(left);
        for (Work w : left) {
            w.onError().accept(new IllegalStateException("worker is shutting down"));
        }
    }
}
