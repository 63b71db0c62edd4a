package dev.moecluster.worker;

import dev.moecluster.core.model.ModelConfig;
import dev.moecluster.core.moe.ExpertWeights;
import dev.moecluster.control.wire.BufferPool;
import dev.moecluster.control.wire.DataPlaneMarshalling;
import dev.moecluster.control.wire.ReceivedBatch;
import dev.moecluster.control.wire.WireTensors;
import dev.moecluster.core.tensor.RowBatch;
import dev.moecluster.proto.DescribeRequest;
import dev.moecluster.proto.ExpertBatch;
import dev.moecluster.proto.ExpertResult;
import dev.moecluster.proto.ExpertServiceGrpc;
import dev.moecluster.proto.ExpertSlice;
import dev.moecluster.proto.HeldExperts;
import dev.moecluster.proto.WorkerDescription;
import io.grpc.ServerServiceDefinition;
import io.grpc.Status;
import io.grpc.stub.ServerCallStreamObserver;
import io.grpc.stub.StreamObserver;
import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import java.util.logging.Level;
import java.util.logging.Logger;

/**
 * The worker's side of the data plane. Each router holds one long-lived {@code Compute} stream; every
 * {@link ExpertBatch} on it is validated, split into per-expert work for the {@link BatchCoalescer},
 * and answered by one {@link ExpertResult} when all its experts are done. Activations stay in their
 * wire dtype: each slice's input is a view of the received message's bytes and its output a view of
 * the result's buffer, which the backend writes and the result message wraps without a copy. Both
 * buffers come from the worker's {@link BufferPool}, in memory of the backend's
 * {@linkplain ExpertBackend#hostAllocator allocator} (pinned for {@code cuda}, so the device reads
 * the received rows and writes the results by DMA), and go back to it once the batch is answered and
 * no slice of it is computing (gRPC has copied a result into its own buffers when {@code onNext}
 * returns). A bad batch gets an error result and the stream goes on. The worker reads at most {@code maxBatchesInFlightPerStream}
 * batches of a stream ahead of the results it has sent (inbound flow control).
 */
final class ExpertComputeService extends ExpertServiceGrpc.ExpertServiceImplBase {
    private static final Logger LOG = Logger.getLogger(ExpertComputeService.class.getName());

    private final String workerId;
    private final String backendName;
    private final ExpertStore store;
    private final BatchCoalescer coalescer;
    private final int maxInFlight;
    /**
     * Buffers of received batches and of results. It keeps at least what 8 batches of Llama 4 Scout's
     * shape (256 rows of 5,120 bf16 values) take in and out, so steady traffic of that size allocates nothing.
     */
    private final BufferPool buffers;
    private final AtomicLong batches = new AtomicLong();
    private final AtomicLong rejected = new AtomicLong();
    private final AtomicLong withdrawnBatches = new AtomicLong();
    private volatile boolean stopped;

    ExpertComputeService(String workerId, ExpertBackend backend, ExpertStore store, BatchCoalescer coalescer, int maxInFlight) {
        this.workerId = workerId;
        this.backendName = backend.name();
        this.buffers = new BufferPool(backend.hostAllocator());
        this.store = store;
        this.coalescer = coalescer;
        this.maxInFlight = maxInFlight;
    }

    /** From now on nothing more is sent on any stream, as after a crash. */
    void stop() {
        stopped = true;
    }

    /**
     * Frees the buffers kept for reuse; later ones are freed as they come back. Call once the server
     * and the coalescer have stopped, before the backend that allocated the buffers closes.
     */
    void close() {
        buffers.close();
        long inUse = buffers.outstanding();
        if (inUse > 0) {
            LOG.warning(() -> "worker " + workerId + ": " + inUse + " data-plane buffers still held at close");
        }
    }

    long batchesServed() {
        return batches.get();
    }

    long batchesRejected() {
        return rejected.get();
    }

    /** Batches the router withdrew before they were computed (answered CANCELLED). */
    long batchesWithdrawn() {
        return withdrawnBatches.get();
    }

    @Override
    public void describe(DescribeRequest request, StreamObserver<WorkerDescription> responses) {
        WorkerDescription.Builder b = WorkerDescription.newBuilder()
                .setWorkerId(workerId)
                .setBackend(backendName)
                .setModel(store.config().name())
                .setHiddenSize(store.config().hiddenSize())
                .setExpertBytes(store.byteSize());
        store.assignment().byLayer().forEach((layer, experts) ->
                b.addHeld(HeldExperts.newBuilder().setLayer(layer).addAllExperts(experts)));
        responses.onNext(b.build());
        responses.onCompleted();
    }

    /** The service with {@code Compute} served by {@link #receive} over the worker's buffer pool. */
    ServerServiceDefinition definition() {
        return DataPlaneMarshalling.bind(this, buffers, this::receive);
    }

    /** The buffers batches and results are read and built in. */
    BufferPool buffers() {
        return buffers;
    }

    private StreamObserver<ReceivedBatch> receive(StreamObserver<ExpertResult> responses) {
        ServerCallStreamObserver<ExpertResult> out = (ServerCallStreamObserver<ExpertResult>) responses;
        out.disableAutoRequest();
        out.request(maxInFlight);
        ResultSender sender = new ResultSender(out, () -> stopped);
        // this stream's batches not answered yet, by id: what a withdrawal names
        Map<Long, PendingBatch> unanswered = new ConcurrentHashMap<>();
        return new StreamObserver<>() {
            @Override
            public void onNext(ReceivedBatch received) {
                ExpertBatch batch = received.batch();
                if (batch.getWithdraw()) {
                    received.release();
                    sender.skip();
                    PendingBatch p = unanswered.get(batch.getId());
                    if (p != null) {
                        p.withdrawn = true;
                    }
                    return;
                }
                handle(received, sender, unanswered);
            }

            @Override
            public void onError(Throwable t) {
                sender.close();
            }

            @Override
            public void onCompleted() {
                sender.finishWhenDrained();
            }
        };
    }

    private void handle(ReceivedBatch received, ResultSender sender, Map<Long, PendingBatch> unanswered) {
        sender.started();
        PendingBatch pending = null;
        Status refusal = null;
        try {
            pending = plan(received, sender, unanswered);
        } catch (StatusException e) {
            refusal = e.status;
        } catch (RuntimeException e) {
            // the worker's own failure (no memory for the result, say): the router tries another replica
            LOG.log(Level.WARNING, "batch " + received.batch().getId() + " failed before computing", e);
            refusal = Status.INTERNAL.withDescription("worker " + workerId + " could not take the batch: " + e);
        }
        if (pending != null) {
            pending.submit();
            return;
        }
        rejected.incrementAndGet();
        received.release();
        sender.send(ExpertResult.newBuilder().setId(received.batch().getId())
                .setErrorCode(refusal.getCode().value())
                .setErrorMessage(String.valueOf(refusal.getDescription()))
                .build());
    }

    /** A client-facing error found while validating a batch. */
    private static final class StatusException extends Exception {
        final Status status;

        StatusException(Status status) {
            super(status.getDescription(), null, false, false);
            this.status = status;
        }
    }

    private PendingBatch plan(ReceivedBatch received, ResultSender sender, Map<Long, PendingBatch> unanswered) throws StatusException {
        ExpertBatch batch = received.batch();
        ModelConfig config = store.config();
        int layer = batch.getLayer();
        if (!config.isMoeLayer(layer)) {
            throw new StatusException(Status.INVALID_ARGUMENT.withDescription(
                    "layer " + layer + " is not a MoE layer of " + config.name() + " (MoE layers: " + config.moeLayerList() + ")"));
        }
        if (batch.getSlicesCount() == 0) {
            throw new StatusException(Status.INVALID_ARGUMENT.withDescription("batch " + batch.getId() + " has no expert slices"));
        }
        RowBatch x;
        try {
            x = WireTensors.rows(batch.getActivations(), "activations");
        } catch (IllegalArgumentException e) {
            throw new StatusException(Status.INVALID_ARGUMENT.withDescription(e.getMessage()));
        }
        if (x.width() != config.hiddenSize()) {
            throw new StatusException(Status.INVALID_ARGUMENT.withDescription("activations have width " + x.width()
                    + " but the model's hidden_size is " + config.hiddenSize()));
        }
        // Row counts add up in 64 bits: int slice counts that wrap must not pass as the right total.
        long total = 0;
        ExpertWeights[] weights = new ExpertWeights[batch.getSlicesCount()];
        for (int i = 0; i < batch.getSlicesCount(); i++) {
            ExpertSlice s = batch.getSlices(i);
            if (s.getRows() <= 0) {
                throw new StatusException(Status.INVALID_ARGUMENT.withDescription("slice for expert " + s.getExpert() + " has " + s.getRows() + " rows"));
            }
            weights[i] = store.get(layer, s.getExpert());
            if (weights[i] == null) {
                Set<Integer> held = store.assignment().byLayer().getOrDefault(layer, Set.of());
                throw new StatusException(Status.NOT_FOUND.withDescription("worker " + workerId + " does not hold expert "
                        + s.getExpert() + " of layer " + layer + " (it holds " + held + ")"));
            }
            total += s.getRows();
        }
        if (total != x.rows()) {
            throw new StatusException(Status.INVALID_ARGUMENT.withDescription("slices add up to " + total
                    + " rows but activations have " + x.rows()));
        }
        long bad = x.firstNonFinite();
        if (bad >= 0) {
            throw new StatusException(Status.INVALID_ARGUMENT.withDescription("activations have a non-finite value at row "
                    + bad / x.width() + ", column " + bad % x.width()));
        }
        return new PendingBatch(received, x, weights, sender, unanswered);
    }

    /**
     * One batch being computed: its slices go to the coalescer, the result goes out when all return,
     * and its buffers go back to the pool when every slice has reported.
     */
    private final class PendingBatch {
        private final ReceivedBatch received;
        private final ExpertBatch batch;
        private final RowBatch input;
        private final MemorySegment outputBuffer;
        private final RowBatch output;
        private final ExpertWeights[] weights;
        private final ResultSender sender;
        /** Slices that have not reported (computed, failed or dropped). */
        private final AtomicInteger remaining;
        private final AtomicBoolean failed = new AtomicBoolean();
        private final Map<Long, PendingBatch> unanswered;
        /** The router withdrew it: slices not computing yet are dropped. */
        volatile boolean withdrawn;

        PendingBatch(ReceivedBatch received, RowBatch input, ExpertWeights[] weights, ResultSender sender,
                Map<Long, PendingBatch> unanswered) {
            this.received = received;
            this.batch = received.batch();
            this.input = input;
            // the plan checked the activations' size, which the output's matches
            this.outputBuffer = buffers.take(RowBatch.wireBytes(input.dtype(), input.rows(), input.width()));
            this.output = RowBatch.over(outputBuffer, input.dtype(), input.rows(), input.width());
            this.weights = weights;
            this.sender = sender;
            this.remaining = new AtomicInteger(weights.length);
            this.unanswered = unanswered;
        }

        void submit() {
            List<BatchCoalescer.Work> work = new ArrayList<>(weights.length);
            int row = 0;
            for (int i = 0; i < weights.length; i++) {
                ExpertSlice s = batch.getSlices(i);
                int rows = s.getRows();
                work.add(new BatchCoalescer.Work(batch.getLayer(), s.getExpert(), weights[i],
                        input.slice(row, rows), output.slice(row, rows), () -> settle(null), this::settle, () -> withdrawn));
                row += rows;
            }
            unanswered.put(batch.getId(), this);
            coalescer.submit(work);
        }

        /**
         * One slice reported, {@code failure} null when it was computed. The first failure answers the
         * batch with an error at once; the last report answers it with the outputs if nothing failed,
         * and only then, with no slice left reading or writing them, are the buffers given back.
         */
        private void settle(Throwable failure) {
            if (failure != null && failed.compareAndSet(false, true)) {
                unanswered.remove(batch.getId());
                sendFailure(failure);
            }
            if (remaining.decrementAndGet() > 0) {
                return;
            }
            try {
                // Outputs go back as computed: a non-finite one is deterministic (every replica would agree), so the
                // router, not a failover, reports it (MoeForward answers INTERNAL).
                if (!failed.get()) {
                    unanswered.remove(batch.getId());
                    batches.incrementAndGet();
                    sender.send(ExpertResult.newBuilder()
                            .setId(batch.getId())
                            .setOutputs(WireTensors.tensor(output))
                            .build());
                }
            } finally {
                received.release();
                buffers.give(outputBuffer);
            }
        }

        private void sendFailure(Throwable t) {
            if (t instanceof java.util.concurrent.CancellationException) {
                withdrawnBatches.incrementAndGet();
                sender.send(ExpertResult.newBuilder().setId(batch.getId()).setErrorCode(Status.Code.CANCELLED.value())
                        .setErrorMessage("batch " + batch.getId() + " withdrawn by the router before worker " + workerId
                                + " computed it").build());
                return;
            }
            if (t instanceof IllegalStateException) {
                LOG.fine(() -> "batch " + batch.getId() + " dropped: " + t.getMessage());
            } else {
                LOG.log(Level.WARNING, "batch " + batch.getId() + " failed", t);
            }
            sender.send(ExpertResult.newBuilder()
                    .setId(batch.getId())
                    .setErrorCode(Status.Code.INTERNAL.value())
                    .setErrorMessage("worker " + workerId + " failed computing layer " + batch.getLayer() + ": " + t)
                    .build());
        }
    }

    /** Serialises results onto one response stream and asks for one more batch per result sent. */
    private static final class ResultSender {
        private final ServerCallStreamObserver<ExpertResult> out;
        private final java.util.function.BooleanSupplier stopped;
        private int inFlight;
        private boolean closed;
        private boolean halfClosed;

        ResultSender(ServerCallStreamObserver<ExpertResult> out, java.util.function.BooleanSupplier stopped) {
            this.out = out;
            this.stopped = stopped;
        }

        synchronized void started() {
            inFlight++;
        }

        /** A message that gets no result (a withdrawal) still frees its place: ask for the next one. */
        synchronized void skip() {
            if (!closed && !out.isCancelled()) {
                out.request(1);
            }
        }

        synchronized void send(ExpertResult result) {
            inFlight--;
            if (closed || stopped.getAsBoolean() || out.isCancelled()) {
                return;
            }
            out.onNext(result);
            if (halfClosed && inFlight == 0) {
                closed = true;
                out.onCompleted();
            } else {
                out.request(1);
            }
        }

        synchronized void finishWhenDrained() {
            halfClosed = true;
            if (inFlight == 0 && !closed) {
                closed = true;
                out.onCompleted();
            }
        }

        synchronized void close() {
            closed = true;
        }
    }
}
