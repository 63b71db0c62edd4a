package dev.moecluster.cli;

import dev.moecluster.proto.ExpertBatch;
import dev.moecluster.proto.ExpertResult;
import dev.moecluster.proto.ExpertServiceGrpc;
import io.grpc.ManagedChannel;
import io.grpc.Server;
import io.grpc.netty.shaded.io.grpc.netty.NettyServerBuilder;
import io.grpc.stub.StreamObserver;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.net.InetSocketAddress;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;

/**
 * A real {@code ExpertService} on loopback in front of a real worker, holding every batch until
 * {@link #open()}: calls that reached the experts stay in flight as long as a test needs them to.
 */
final class GatedWorker implements AutoCloseable {
    private final ManagedChannel upstream;
    private final Server server;
    private final List<Runnable> held = new ArrayList<>(); // guarded by this
    private boolean opened; // guarded by this
    private final LinkedBlockingQueue<Long> arrived = new LinkedBlockingQueue<>();

    GatedWorker(String workerAddress) {
        this.upstream = Clusters.channel(workerAddress);
        try {
            this.server = NettyServerBuilder.forAddress(new InetSocketAddress("127.0.0.1", 0))
                    .maxInboundMessageSize(256 << 20)
                    .addService(new Relay())
                    .build().start();
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    String address() {
        return "127.0.0.1:" + server.getPort();
    }

    /** Waits until {@code n} batches are being held; fails after 60 s. */
    void awaitHeld(int n) throws InterruptedException {
        for (int i = 0; i < n; i++) {
            if (arrived.poll(60, TimeUnit.SECONDS) == null) {
                throw new AssertionError("only " + i + " of " + n + " batches reached the gated worker");
            }
        }
    }

    /** Lets the held batches and every later one through. */
    void open() {
        List<Runnable> release;
        synchronized (this) {
            opened = true;
            release = List.copyOf(held);
            held.clear();
        }
        release.forEach(Runnable::run);
    }

    @Override
    public void close() {
        open();
        server.shutdownNow();
        upstream.shutdownNow();
    }

    private final class Relay extends ExpertServiceGrpc.ExpertServiceImplBase {
        @Override
        public StreamObserver<ExpertBatch> compute(StreamObserver<ExpertResult> results) {
            StreamObserver<ExpertResult> back = new StreamObserver<>() {
                @Override
                public synchronized void onNext(ExpertResult value) {
                    results.onNext(value);
                }

                @Override
                public synchronized void onError(Throwable t) {
                    results.onError(t);
                }

                @Override
                public synchronized void onCompleted() {
                    results.onCompleted();
                }
            };
            StreamObserver<ExpertBatch> forward = ExpertServiceGrpc.newStub(upstream).compute(back);
            return new StreamObserver<>() {
                @Override
                public void onNext(ExpertBatch batch) {
                    synchronized (GatedWorker.this) {
                        if (!opened) {
                            // later batches of the stream must reach us too, so hold without blocking
                            held.add(() -> send(forward, batch));
                            arrived.add(batch.getId());
                            return;
                        }
                    }
                    send(forward, batch);
                }

                @Override
                public void onError(Throwable t) {
                    synchronized (forward) {
                        forward.onError(t);
                    }
                }

                @Override
                public void onCompleted() {
                    synchronized (forward) {
                        forward.onCompleted();
                    }
                }
            };
        }
    }

    /** Released batches and new ones may come from two threads; a stream takes one at a time. */
    private static void send(StreamObserver<ExpertBatch> forward, ExpertBatch batch) {
        synchronized (forward) {
            forward.onNext(batch);
        }
    }
}
