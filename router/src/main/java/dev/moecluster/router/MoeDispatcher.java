package dev.moecluster.router;

import static java.util.Objects.requireNonNull;

import dev.moecluster.control.wire.WireTensors;
import dev.moecluster.core.moe.GateResult;
import dev.moecluster.core.placement.ExpertPlacement;
import dev.moecluster.core.tensor.DType;
import dev.moecluster.core.tensor.FloatMatrix;
import dev.moecluster.core.tensor.RowBatch;
import dev.moecluster.proto.ExpertBatch;
import dev.moecluster.proto.ExpertResult;
import dev.moecluster.proto.ExpertSlice;
import io.grpc.ChannelCredentials;
import io.grpc.Context;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicReference;
import java.util.concurrent.CompletionException;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;

/**
 * Sends a MoE layer's routed rows to the expert workers and combines what comes back.
 *
 * <p>For one layer call: a {@link DispatchPlan} says which worker gets which expert's rows; each
 * worker gets one {@link ExpertBatch} whose activations are written once, in the wire dtype, straight
 * from the hidden states; the results' rows are scatter-added into the f32 output as they arrive on
 * the wire, weighted by the gate unless the architecture scaled the input instead. Each expert goes to
 * the replica expected to answer first ({@link WorkerLatency}). A batch still out when 95 % of recent
 * batches had come back is hedged: resent to other replicas, first complete answer wins. A worker that
 * fails or misses its deadline has its experts resent to other replicas at once (expert compute is
 * pure, so a resend is always safe); only an expert with no replica left fails the call, with
 * UNAVAILABLE naming it.
 */
final class MoeDispatcher {
    private static final java.util.logging.Logger LOG = java.util.logging.Logger.getLogger(MoeDispatcher.class.getName());

    private final AtomicReference<ExpertPlacement> placement;
    private final Map<String, WorkerChannel> channels = new ConcurrentHashMap<>();
    private final int maxInboundMessageBytes;
    private final DType wireDtype;
    private final Duration expertTimeout;
    private final DispatchStats stats;
    private final AtomicLong batchIds = new AtomicLong();
    private final ChannelCredentials workerCredentials;
    private final int channelsPerWorker;
    private final WorkerLatency latency = new WorkerLatency();

    MoeDispatcher(ExpertPlacement placement, int maxInboundMessageBytes, DType wireDtype, Duration expertTimeout,
            DispatchStats stats, ChannelCredentials workerCredentials, int channelsPerWorker) {
        this.placement = new AtomicReference<>(requireNonNull(placement, "placement is null"));
        this.maxInboundMessageBytes = maxInboundMessageBytes;
        this.wireDtype = requireNonNull(wireDtype, "wireDtype is null");
        this.expertTimeout = requireNonNull(expertTimeout, "expertTimeout is null");
        this.stats = requireNonNull(stats, "stats is null");
        this.workerCredentials = requireNonNull(workerCredentials, "workerCredentials is null");
        this.channelsPerWorker = channelsPerWorker;
        LOG.info(() -> "data plane: " + channelsPerWorker + " connection(s) per worker over "
                + (io.grpc.netty.shaded.io.netty.channel.epoll.Epoll.isAvailable() ? "epoll" : "NIO (epoll unavailable)"));
    }

    /** The placement new calls use. */
    ExpertPlacement placement() {
        return placement.get();
    }

    /**
     * Switches to a newer placement: calls that start from now on use it, calls in flight finish on
     * the one they started with. Older or equal epochs are ignored.
     */
    boolean update(ExpertPlacement next) {
        ExpertPlacement prev = placement.getAndUpdate(cur -> next.epoch() > cur.epoch() ? next : cur);
        if (next.epoch() > prev.epoch()) {
            LOG.info("routing with placement epoch " + next.epoch() + " (" + next.workers().size() + " workers)");
            return true;
        }
        return false;
    }

    private WorkerChannel channel(String address) {
        return channels.computeIfAbsent(address, a -> {
            stats.knowWorker(a);
            return new WorkerChannel(a, channelsPerWorker, maxInboundMessageBytes, workerCredentials);
        });
    }

    void close() {
        channels.values().forEach(WorkerChannel::close);
        channels.clear();
    }

    /** What went to one worker and is awaited. */
    /**
     * A batch in flight. {@code judged} turns true once its outcome went into the worker's health
     * counts: when it completes, or earlier when a hedge overtook it by {@link #OVERDUE_AFTER_HEDGE_NANOS}.
     */
    private record Sent(long id, DispatchPlan.WorkerShare share, CompletableFuture<ExpertResult> result, long bytesOut,
            long sentNanos, AtomicBoolean judged) {}

    /**
     * A batch still out this long after its hedge answered counts as failed at once: the same rows came
     * back from another replica, so a worker this far behind has stopped answering (a dead data plane,
     * a frozen process), and the coordinators hear so without waiting for the expert timeout.
     */
    static final long OVERDUE_AFTER_HEDGE_NANOS = TimeUnit.SECONDS.toNanos(2);

    /** The channels' current load and health, as the plan reads them. */
    private final DispatchPlan.WorkerView view = new DispatchPlan.WorkerView() {
        @Override
        public long outstandingRows(String address) {
            return channel(address).outstandingRows();
        }

        @Override
        public boolean healthy(String address) {
            return channel(address).healthy();
        }

        @Override
        public long expectedNanos(String address, long rowsAhead, long rows) {
            return latency.expectedNanos(address, rowsAhead, rows, System.nanoTime());
        }
    };

    /**
     * Runs the routed experts of {@code layer} for {@code x} and returns their combined output
     * ({@code tokens × H}). {@code overlap} runs on the calling thread while the workers compute.
     *
     * @throws StatusRuntimeException UNAVAILABLE when an expert has no working replica
     */
    float[] dispatch(int layer, FloatMatrix x, GateResult gate, Runnable overlap) {
        ExpertPlacement placement = this.placement.get();
        float[] out = new float[x.rows() * x.cols()];
        List<DispatchPlan.ExpertRows> todo = DispatchPlan.groupByExpert(gate);
        Set<Integer> failed = new HashSet<>();
        Map<Integer, String> lastError = new LinkedHashMap<>();
        boolean overlapped = false;
        // a caller that goes away (cancel, deadline) withdraws what it sent: workers drop rows nobody waits for
        Context caller = Context.current();
        List<Sent> outstanding = new java.util.concurrent.CopyOnWriteArrayList<>();
        Context.CancellationListener withdrawAll = c -> outstanding.forEach(s -> channel(s.share().address()).withdraw(s.id()));
        caller.addListener(withdrawAll, Runnable::run);
        try {
            while (!todo.isEmpty()) {
                DispatchPlan plan = DispatchPlan.of(placement, layer, todo, failed, view, lastError);
                List<Sent> sent = new ArrayList<>(plan.shares().size());
                for (DispatchPlan.WorkerShare share : plan.shares()) {
                    sent.add(send(layer, share, x, gate, false));
                }
                outstanding.addAll(sent);
                if (caller.isCancelled()) { // gone before the listener was in place, or while sending
                    withdrawAll.cancelled(caller);
                }
                if (!overlapped) {
                    overlapped = true;
                    overlap.run();
                }
                todo = new ArrayList<>();
                for (Sent s : sent) {
                    String error = awaitHedged(s, layer, placement, x, gate, out);
                    if (error != null && caller.isCancelled()) {
                        throw Status.CANCELLED.withDescription("the caller went away; its batches were withdrawn")
                                .asRuntimeException();
                    }
                    if (error != null) {
                        failed.add(s.share().worker());
                        lastError.put(s.share().worker(), error);
                        stats.recordFailover(s.share().address());
                        todo.addAll(s.share().experts());
                    }
                }
                outstanding.clear();
            }
        } finally {
            caller.removeListener(withdrawAll);
        }
        return out;
    }

    /**
     * Packs one worker's rows straight from the hidden states into the message's buffer in the wire
     * dtype (scaled by the gate first where the architecture scales inputs) and sends it.
     */
    private Sent send(int layer, DispatchPlan.WorkerShare share, FloatMatrix x, GateResult gate, boolean hedge) {
        int h = x.cols();
        int k = gate.k();
        int rows = share.rows();
        RowBatch act = RowBatch.onHeap(wireDtype, rows, h);
        ExpertBatch.Builder batch = ExpertBatch.newBuilder().setId(batchIds.incrementAndGet()).setLayer(layer);
        int r = 0;
        for (DispatchPlan.ExpertRows g : share.experts()) {
            batch.addSlices(ExpertSlice.newBuilder().setExpert(g.expert()).setRows(g.slots().length));
            if (!hedge) { // a hedge's rows are the same tokens' second copy: the load report counts them once
                stats.recordRows(layer, g.expert(), g.slots().length);
            }
            for (int slot : g.slots()) {
                act.putRow(r++, x.data(), (slot / k) * h, gate.scalesInput() ? gate.weights()[slot] : 1f);
            }
        }
        ExpertBatch message = batch.setActivations(WireTensors.tensor(act)).build();
        long started = System.nanoTime();
        CompletableFuture<ExpertResult> result = channel(share.address()).send(message, rows, expertTimeout);
        AtomicBoolean judged = new AtomicBoolean();
        result.whenComplete((answer, error) -> {
            if (error == null && answer.getErrorCode() == Status.Code.CANCELLED.value()) {
                // withdrawn after its race was decided: the worker is alive, and its latency says nothing
                judged.set(true);
                stats.recordLateAnswer(share.address());
                return;
            }
            long now = System.nanoTime();
            stats.recordWorkerLatency(share.address(), now - started);
            boolean answered = error == null && answer.getErrorCode() == 0;
            if (judged.compareAndSet(false, true)) {
                stats.recordOutcome(share.address(), answered);
            } else if (answered) {
                stats.recordLateAnswer(share.address());
            }
            if (answered) {
                latency.record(share.address(), rows, now - started, now);
            } else {
                latency.recordFailure(share.address(), rows, now - started, now);
            }
        });
        return new Sent(message.getId(), share, result, message.getSerializedSize(), started, judged);
    }

    /**
     * Waits for {@code s} and combines its result. A batch still out when 95 % of recent batches had
     * come back is hedged: its experts go to their other replicas too, the first complete answer is
     * combined and the other ignored (the worker still computes it; its rows stay counted against that
     * worker until it answers). Returns an error text when the answer used failed.
     */
    private String awaitHedged(Sent s, int layer, ExpertPlacement placement, FloatMatrix x, GateResult gate, float[] out) {
        long hedgeAfter = latency.hedgeAfterNanos(System.nanoTime());
        if (hedgeAfter >= 0 && !s.result().isDone()) {
            long wait = hedgeAfter - (System.nanoTime() - s.sentNanos());
            if (wait > 0) {
                try {
                    s.result().get(wait, TimeUnit.NANOSECONDS);
                } catch (TimeoutException | ExecutionException | java.util.concurrent.CancellationException slowOrFailed) {
                    // slow: hedged below; failed: combined (as an error) below
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                }
            }
            if (!s.result().isDone() && !Context.current().isCancelled()) { // no hedge for a caller that went away
                List<Sent> hedges = hedge(s, layer, placement, x, gate);
                if (!hedges.isEmpty()) {
                    return race(s, hedges, gate, x.cols(), out);
                }
            }
        }
        return awaitAndCombine(s, gate, x.cols(), out);
    }

    /** Sends {@code slow}'s experts to their other replicas; none when some expert has no other replica. */
    private List<Sent> hedge(Sent slow, int layer, ExpertPlacement placement, FloatMatrix x, GateResult gate) {
        DispatchPlan plan;
        try {
            plan = DispatchPlan.of(placement, layer, slow.share().experts(), Set.of(slow.share().worker()), view, new LinkedHashMap<>());
        } catch (StatusRuntimeException noOtherReplica) {
            return List.of();
        }
        List<Sent> hedges = new ArrayList<>(plan.shares().size());
        for (DispatchPlan.WorkerShare share : plan.shares()) {
            hedges.add(send(layer, share, x, gate, true));
        }
        return hedges;
    }

    /** Combines whichever of {@code primary} and all of {@code hedges} answers first without error. */
    private String race(Sent primary, List<Sent> hedges, GateResult gate, int h, float[] out) {
        CompletableFuture<Boolean> primaryOk = primary.result().handle((r, e) -> e == null && r.getErrorCode() == 0);
        CompletableFuture<Boolean> hedgesOk = CompletableFuture.allOf(hedges.stream().map(Sent::result).toArray(CompletableFuture[]::new))
                .handle((v, e) -> e == null && hedges.stream().allMatch(hs -> hs.result().join().getErrorCode() == 0));
        CompletableFuture<String> first = new CompletableFuture<>();
        primaryOk.thenAccept(ok -> {
            if (ok) {
                first.complete("primary");
            } else if (hedgesOk.isDone() && !hedgesOk.join()) {
                first.complete("neither");
            }
        });
        hedgesOk.thenAccept(ok -> {
            if (ok) {
                first.complete("hedge");
            } else if (primaryOk.isDone() && !primaryOk.join()) {
                first.complete("neither");
            }
        });
        String winner = first.join();
        stats.recordHedge(winner);
        // the loser's rows are not needed any more: the worker drops them if it has not started on them
        if (winner.equals("primary")) {
            hedges.forEach(hs -> channel(hs.share().address()).withdraw(hs.id()));
        }
        if (winner.equals("hedge")) {
            channel(primary.share().address()).withdraw(primary.id());
            CompletableFuture.delayedExecutor(OVERDUE_AFTER_HEDGE_NANOS, TimeUnit.NANOSECONDS).execute(() -> {
                if (!primary.result().isDone() && primary.judged().compareAndSet(false, true)) {
                    stats.recordOutcome(primary.share().address(), false);
                }
            });
            List<Answer> answers = new ArrayList<>(hedges.size());
            for (Sent hs : hedges) {
                Answer a = answer(hs, h);
                if (a.error() != null) {
                    return a.error(); // nothing combined yet: the failover resends the experts elsewhere
                }
                answers.add(a);
            }
            for (int i = 0; i < hedges.size(); i++) {
                combine(hedges.get(i), answers.get(i), gate, h, out);
            }
            return null;
        }
        return awaitAndCombine(primary, gate, h, out); // the primary answered first, or its error starts the failover
    }

    /**
     * Waits for one worker's result and adds it into {@code out}, reading the wire rows as they are
     * and weighting them by the gate in f32; returns an error text on failure.
     */
    private String awaitAndCombine(Sent s, GateResult gate, int h, float[] out) {
        Answer a = answer(s, h);
        if (a.error() == null) {
            combine(s, a, gate, h, out);
        }
        return a.error();
    }

    /** A worker's result read as rows, or what is wrong with it. */
    private record Answer(ExpertResult result, RowBatch rows, String error) {
        static Answer failed(String error) {
            return new Answer(null, null, error);
        }
    }

    private void combine(Sent s, Answer a, GateResult gate, int h, float[] out) {
        stats.recordBatch(s.bytesOut(), a.result().getSerializedSize());
        int k = gate.k();
        int r = 0;
        for (DispatchPlan.ExpertRows g : s.share().experts()) {
            for (int slot : g.slots()) {
                a.rows().addRowTo(r++, gate.scalesInput() ? 1f : gate.weights()[slot], out, (slot / k) * h);
            }
        }
    }

    /** Waits for one worker's result and reads its rows; the error when it failed, has an error, or is malformed or misshapen. */
    private static Answer answer(Sent s, int h) {
        ExpertResult result;
        try {
            result = s.result().join();
        } catch (CompletionException | java.util.concurrent.CancellationException e) {
            Status st = Status.fromThrowable(e.getCause() == null ? e : e.getCause());
            return Answer.failed(st.getCode() + (st.getDescription() == null ? "" : ": " + st.getDescription()));
        }
        if (result.getErrorCode() != 0) {
            return Answer.failed(Status.fromCodeValue(result.getErrorCode()).getCode() + ": " + result.getErrorMessage());
        }
        RowBatch y;
        try {
            y = WireTensors.rows(result.getOutputs(), "worker outputs");
        } catch (IllegalArgumentException e) {
            return Answer.failed("malformed result: " + e.getMessage());
        }
        int expectedRows = s.share().rows();
        if (y.rows() != expectedRows || y.width() != h) {
            return Answer.failed("result has shape " + y.rows() + "x" + y.width() + ", expected " + expectedRows + "x" + h);
        }
        return new Answer(result, y, null);
    }
}
