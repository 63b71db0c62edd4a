package dev.moecluster.router;

import dev.moecluster.proto.ExpertBatch;
import dev.moecluster.proto.ExpertResult;
import dev.moecluster.control.wire.DataPlaneMarshalling;
import io.grpc.CallOptions;
import io.grpc.ChannelCredentials;
import io.grpc.Context;
import io.grpc.ManagedChannel;
import io.grpc.Status;
import io.grpc.netty.shaded.io.grpc.netty.NettyChannelBuilder;
import io.grpc.stub.ClientCallStreamObserver;
import io.grpc.stub.ClientCalls;
import io.grpc.stub.ClientResponseObserver;
import java.time.Duration;
import java.util.ArrayDeque;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicLong;

/**
 * The router's connection to one expert worker: one or more connections ({@code lanes}, each a
 * channel with one long-lived {@code Compute} stream) carrying batches out and results back, matched
 * by id. One HTTP/2 connection is served by one event-loop thread at each end, so a hot worker gets
 * several, used in turn. Results are parsed with {@link DataPlaneMarshalling}'s aliasing marshaller,
 * so their rows reach the combine without a copy. Sends respect the stream's {@code isReady()} (a
 * backlog holds what the transport cannot take yet). A broken stream fails its in-flight batches at
 * once, so the dispatcher can fail over, and the next send on that lane opens a new one.
 */
final class WorkerChannel implements AutoCloseable {
    /** How long a worker whose stream broke is passed over when a healthy replica exists. */
    private static final long UNHEALTHY_NANOS = TimeUnit.SECONDS.toNanos(2);

    private final String address;
    private final ManagedChannel[] channels;
    private final Object lock = new Object();
    private final AtomicLong outstandingRows = new AtomicLong();
    private volatile long unhealthyUntil = System.nanoTime();
    private final StreamState[] streams; // guarded by lock
    private int nextLane; // guarded by lock

    /** {@code credentials}: TLS as the router's identity, or plaintext; {@code lanes}: connections to open. */
    WorkerChannel(String address, int lanes, int maxInboundMessageBytes, ChannelCredentials credentials) {
        if (lanes < 1) {
            throw new IllegalArgumentException("a worker needs at least one connection, got " + lanes);
        }
        this.address = address;
        this.channels = new ManagedChannel[lanes];
        this.streams = new StreamState[lanes];
        for (int i = 0; i < lanes; i++) {
            // Separate channels are separate connections (one channel shares one connection among its streams).
            // Results are parsed and handed over on the connection's event loop: the stream's callbacks
            // only complete futures (or flush under a short lock), so a hop through gRPC's executor
            // would add a thread wake-up to every batch and nothing else.
            channels[i] = NettyChannelBuilder.forTarget(address, credentials)
                    .directExecutor()
                    .maxInboundMessageSize(maxInboundMessageBytes)
                    .keepAliveTime(30, TimeUnit.SECONDS)
                    .build();
        }
    }

    String address() {
        return address;
    }

    /** Rows sent to this worker and not yet answered, the load measure replica choice uses. */
    long outstandingRows() {
        return outstandingRows.get();
    }

    boolean healthy() {
        return System.nanoTime() - unhealthyUntil >= 0;
    }

    /**
     * Sends a batch; the future completes with the worker's result, or exceptionally with a
     * {@link io.grpc.StatusRuntimeException} if the stream breaks or {@code deadline} passes.
     */
    CompletableFuture<ExpertResult> send(ExpertBatch batch, int rows, Duration deadline) {
        CompletableFuture<ExpertResult> result = new CompletableFuture<>();
        outstandingRows.addAndGet(rows);
        StreamState s;
        synchronized (lock) {
            int lane = nextLane;
            nextLane = (nextLane + 1) % streams.length;
            if (streams[lane] == null || streams[lane].broken) {
                streams[lane] = new StreamState(channels[lane]);
                streams[lane].open();
            }
            s = streams[lane];
            s.pending.put(batch.getId(), result);
            s.backlog.add(batch);
            s.flush();
        }
        return result.orTimeout(deadline.toNanos(), TimeUnit.NANOSECONDS)
                .exceptionallyCompose(t -> CompletableFuture.failedFuture(translate(t, deadline)))
                .whenComplete((r, t) -> {
                    outstandingRows.addAndGet(-rows);
                    s.pending.remove(batch.getId());
                    if (t != null) {
                        unhealthyUntil = System.nanoTime() + UNHEALTHY_NANOS;
                    }
                });
    }

    /**
     * Withdraws a batch sent earlier and not answered yet (a hedge of it answered first): the worker
     * drops its rows if they are not computing yet and answers it CANCELLED. Nothing when it was answered.
     */
    void withdraw(long batchId) {
        synchronized (lock) {
            for (StreamState s : streams) {
                if (s != null && !s.broken && s.pending.containsKey(batchId)) {
                    s.backlog.add(ExpertBatch.newBuilder().setId(batchId).setWithdraw(true).build());
                    s.flush();
                    return;
                }
            }
        }
    }

    private Throwable translate(Throwable t, Duration deadline) {
        Throwable cause = t instanceof java.util.concurrent.CompletionException && t.getCause() != null ? t.getCause() : t;
        if (cause instanceof TimeoutException) {
            return Status.DEADLINE_EXCEEDED.withDescription("worker " + address + " did not answer within "
                    + deadline.toMillis() + " ms").asRuntimeException();
        }
        return cause;
    }

    /** One Compute stream and the batches in flight on it. */
    private final class StreamState implements ClientResponseObserver<ExpertBatch, ExpertResult> {
        final Map<Long, CompletableFuture<ExpertResult>> pending = new ConcurrentHashMap<>();
        final ArrayDeque<ExpertBatch> backlog = new ArrayDeque<>(); // guarded by WorkerChannel.lock
        final ManagedChannel channel;
        ClientCallStreamObserver<ExpertBatch> requests;
        volatile boolean broken;

        StreamState(ManagedChannel channel) {
            this.channel = channel;
        }

        void open() {
            // The stream outlives the request that opened it: detach it from that call's Context,
            // whose cancellation would otherwise cancel the stream for everyone.
            Context.ROOT.run(() -> ClientCalls.asyncBidiStreamingCall(
                    channel.newCall(DataPlaneMarshalling.computeMethod(), CallOptions.DEFAULT), this));
        }

        @Override
        public void beforeStart(ClientCallStreamObserver<ExpertBatch> requestStream) {
            this.requests = requestStream;
            requestStream.setOnReadyHandler(() -> {
                synchronized (lock) {
                    flush();
                }
            });
        }

        void flush() {
            while (!broken && requests.isReady() && !backlog.isEmpty()) {
                requests.onNext(backlog.poll());
            }
        }

        @Override
        public void onNext(ExpertResult result) {
            CompletableFuture<ExpertResult> f = pending.remove(result.getId());
            if (f != null) {
                f.complete(result);
            }
        }

        @Override
        public void onError(Throwable t) {
            Status s = Status.fromThrowable(t);
            fail(Status.UNAVAILABLE.withDescription("worker " + address + " failed: " + s.getCode()
                    + (s.getDescription() == null ? "" : " " + s.getDescription())).withCause(t));
        }

        @Override
        public void onCompleted() {
            fail(Status.UNAVAILABLE.withDescription("worker " + address + " closed the stream"));
        }

        private void fail(Status status) {
            broken = true;
            unhealthyUntil = System.nanoTime() + UNHEALTHY_NANOS;
            synchronized (lock) {
                backlog.clear();
            }
            for (Long id : pending.keySet()) {
                CompletableFuture<ExpertResult> f = pending.remove(id);
                if (f != null) {
                    f.completeExceptionally(status.asRuntimeException());
                }
            }
        }
    }

    @Override
    public void close() {
        synchronized (lock) {
            for (StreamState stream : streams) {
                if (stream != null && !stream.broken) {
                    stream.requests.onCompleted();
                }
            }
        }
        for (ManagedChannel channel : channels) {
            channel.shutdown();
        }
        try {
            for (ManagedChannel channel : channels) {
                if (!channel.awaitTermination(2, TimeUnit.SECONDS)) {
                    channel.shutdownNow();
                }
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            for (ManagedChannel channel : channels) {
                channel.shutdownNow();
            }
        }
    }
}
