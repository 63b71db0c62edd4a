package dev.moecluster.worker;

import static java.util.Objects.requireNonNull;

import dev.moecluster.core.moe.ExpertWeights;
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
import java.util.function.Consumer;
import java.util.logging.Level;
import java.util.logging.Logger;

/**
 * Pools rows for the same (layer, expert) arriving from many routers and batches into one backend
 * call, so an expert's weights are streamed once per pooled batch instead of once per sender.
 *
 * <p>One compute thread takes work as it arrives. Everything queued by the time it is free joins the
 * next round (natural batching: under load, batches grow by themselves); a positive {@code window}
 * additionally waits that long after the first item for more.
 */
final class BatchCoalescer implements AutoCloseable {
    private static final Logger LOG = Logger.getLogger(BatchCoalescer.class.getName());

    /** Rows of one expert from one batch; exactly one of the callbacks runs. */
    record Work(int layer, int expert, ExpertWeights weights, float[] input, int rows,
            Consumer<float[]> onDone, Consumer<Throwable> onError) {}

    private final ExpertBackend backend;
    private final int hidden;
    private final long windowNanos;
    private final BlockingQueue<Work> queue = new LinkedBlockingQueue<>();
    private final Thread thread;
    private final AtomicLong rounds = new AtomicLong();
    private final AtomicLong calls = new AtomicLong();
    private final AtomicLong rowsComputed = new AtomicLong();
    private final Map<Long, LongAdder> rowsByExpert = new ConcurrentHashMap<>();
    private final Histogram rowsPerCall = Histogram.builder()
            .name("moe_worker_backend_call_rows")
            .help("Rows per backend call after coalescing")
            .classicOnly()
            .classicExponentialUpperBounds(1, 2, 14)
            .build();
    private final Histogram computeSeconds = Histogram.builder()
            .name("moe_worker_compute_seconds")
            .help("Time of one backend call")
            .classicOnly()
            .classicUpperBounds(.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1)
            .build();
    private volatile boolean running = true;

    BatchCoalescer(ExpertBackend backend, int hidden, Duration window) {
        this.backend = requireNonNull(backend, "backend is null");
        this.hidden = hidden;
        this.windowNanos = window.toNanos();
        this.thread = Thread.ofPlatform().name("moe-expert-compute").daemon().start(this::run);
    }

    void submit(Work work) {
        if (!running) {
            work.onError().accept(new IllegalStateException("worker is shutting down"));
            return;
        }
        queue.add(work);
    }

    /** Backend calls so far and the rows they computed; rows per call is the coalescing gain. */
    long backendCalls() {
        return calls.get();
    }

    long rowsComputed() {
        return rowsComputed.get();
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

    /** Rows per backend call; unregistered until the worker's metrics register it. */
    Histogram rowsPerCall() {
        return rowsPerCall;
    }

    /** Seconds per backend call; unregistered until the worker's metrics register it. */
    Histogram computeSeconds() {
        return computeSeconds;
    }

    private void run() {
        List<Work> round = new ArrayList<>();
        while (running) {
            try {
                Work first = queue.poll(100, TimeUnit.MILLISECONDS);
                if (first == null) {
                    continue;
                }
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
                queue.drainTo(round);
                computeRound(round);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                return;
            } finally {
                round.clear();
            }
        }
    }

    private void computeRound(List<Work> round) {
        rounds.incrementAndGet();
        Map<Long, List<Work>> byExpert = new LinkedHashMap<>();
        for (Work w : round) {
            byExpert.computeIfAbsent((long) w.layer() << 32 | w.expert(), k -> new ArrayList<>()).add(w);
        }
        for (List<Work> group : byExpert.values()) {
            try {
                computeGroup(group);
            } catch (RuntimeException | Error e) {
                LOG.log(Level.WARNING, "expert computation failed", e);
                for (Work w : group) {
                    w.onError().accept(e);
                }
            }
        }
    }

    private void computeGroup(List<Work> group) {
        int rows = 0;
        for (Work w : group) {
            rows += w.rows();
        }
        float[] input;
        if (group.size() == 1) {
            input = group.getFirst().input();
        } else {
            input = new float[rows * hidden];
            int off = 0;
            for (Work w : group) {
                System.arraycopy(w.input(), 0, input, off, w.rows() * hidden);
                off += w.rows() * hidden;
            }
        }
        float[] output = new float[rows * hidden];
        long started = System.nanoTime();
        backend.compute(group.getFirst().weights(), input, rows, output);
        computeSeconds.observe((System.nanoTime() - started) / 1e9);
        rowsPerCall.observe(rows);
        calls.incrementAndGet();
        rowsComputed.addAndGet(rows);
        Work head = group.getFirst();
        rowsByExpert.computeIfAbsent((long) head.layer() << 32 | head.expert(), k -> new LongAdder()).add(rows);
        if (group.size() == 1) {
            group.getFirst().onDone().accept(output);
            return;
        }
        int off = 0;
        for (Work w : group) {
            float[] part = new float[w.rows() * hidden];
            System.arraycopy(output, off, part, 0, part.length);
            off += part.length;
            w.onDone().accept(part);
        }
    }

    @Override
    public void close() {
        running = false;
        thread.interrupt();
        List<Work> left = new ArrayList<>();
        queue.drainTo(left);
        for (Work w : left) {
            w.onError().accept(new IllegalStateException("worker is shutting down"));
        }
    }
}
