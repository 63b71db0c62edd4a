package dev.moecluster.bench.fault;

import dev.moecluster.bench.MoeForwardLoad;
import dev.moecluster.control.wire.WireTensors;
import dev.moecluster.core.model.ModelConfig;
import dev.moecluster.core.moe.ReferenceMoeBlock;
import dev.moecluster.core.tensor.DType;
import dev.moecluster.core.tensor.FloatMatrix;
import dev.moecluster.proto.MoeForwardRequest;
import dev.moecluster.proto.RouterGrpc;
import io.grpc.ManagedChannel;
import io.grpc.StatusRuntimeException;
import io.grpc.netty.shaded.io.grpc.netty.NettyChannelBuilder;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Queue;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;

/**
 * MoeForward calls kept in flight at a router for as long as the harness runs, each answer checked
 * against the in-process reference (a wrong answer is a failure like an error), every call recorded
 * with its start time so any window of time can be measured afterwards.
 */
public final class SteadyTraffic implements AutoCloseable {
    /** Relative L2 error above which an answer is wrong rather than rounded (bf16 rounding is ~4e-3). */
    static final double TOLERANCE = 2e-2;
    private static final int POOL = 16;

    /** One call: when it started and ended (System.nanoTime), and why it failed (null when it did not). */
    public record Call(long startNanos, long endNanos, String error) {
        public long micros() {
            return (endNanos - startNanos) / 1000;
        }
    }

    private final Queue<Call> calls = new ConcurrentLinkedQueue<>();
    private final AtomicBoolean running = new AtomicBoolean(true);
    private final List<Thread> threads = new ArrayList<>();
    private final ManagedChannel channel;

    /**
     * Starts {@code concurrency} callers, each with one call in flight, {@code tokens} rows per call,
     * a 30 s deadline per call.
     */
    public SteadyTraffic(String router, Path model, ModelConfig config, int tokens, int concurrency) throws java.io.IOException {
        DType dtype = config.dtype() == DType.F32 ? DType.F32 : DType.BF16;
        var load = new MoeForwardLoad(config, null);
        var o = new MoeForwardLoad.Options(POOL, tokens, 1, dtype, 11, false);
        List<MoeForwardRequest> requests = new ArrayList<>();
        List<FloatMatrix> expected = new ArrayList<>();
        try (ReferenceMoeBlock reference = ReferenceMoeBlock.open(model)) {
            for (int i = 0; i < POOL; i++) {
                FloatMatrix x = load.input(o, i);
                requests.add(MoeForwardRequest.newBuilder().setModel(config.name()).setLayer(load.layer(i))
                        .setHiddenStates(WireTensors.encode(x, dtype)).build());
                expected.add(reference.forward(load.layer(i), x).output());
            }
        }
        channel = NettyChannelBuilder.forTarget(router).usePlaintext().maxInboundMessageSize(64 << 20).build();
        var stub = RouterGrpc.newBlockingStub(channel);
        for (int c = 0; c < concurrency; c++) {
            int first = c;
            threads.add(Thread.ofPlatform().name("traffic-" + c).start(() -> {
                for (int i = first; running.get(); i += concurrency) {
                    int k = i % POOL;
                    long t0 = System.nanoTime();
                    String error = null;
                    try {
                        FloatMatrix y = WireTensors.decode(stub.withDeadlineAfter(30, TimeUnit.SECONDS)
                                .moeForward(requests.get(k)).getOutput(), "output");
                        double e = MoeForwardLoad.relativeError(y, expected.get(k));
                        if (!(e < TOLERANCE)) {
                            error = "wrong answer (relative error " + e + ")";
                        }
                    } catch (StatusRuntimeException e) {
                        error = e.getStatus().getCode() + ": " + e.getStatus().getDescription();
                    }
                    calls.add(new Call(t0, System.nanoTime(), error));
                }
            }));
        }
    }

    /** Calls that started in [from, to) (System.nanoTime). */
    public List<Call> between(long from, long to) {
        return calls.stream().filter(c -> c.startNanos() >= from && c.startNanos() < to).toList();
    }

    /** Calls answered so far without error. */
    public long succeeded() {
        return calls.stream().filter(c -> c.error() == null).count();
    }

    @Override
    public void close() throws InterruptedException {
        running.set(false);
        for (Thread t : threads) {
            t.join(35_000);
        }
        channel.shutdownNow();
    }
}
