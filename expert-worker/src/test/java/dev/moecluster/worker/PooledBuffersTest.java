package dev.moecluster.worker;

import static org.assertj.core.api.Assertions.assertThat;

import com.google.protobuf.ByteString;
import dev.moecluster.control.wire.BufferPool;
import dev.moecluster.control.wire.HostAllocator;
import dev.moecluster.control.wire.WireTensors;
import dev.moecluster.core.model.Architecture;
import dev.moecluster.core.model.ModelConfig;
import dev.moecluster.core.model.ModelGenerator;
import dev.moecluster.core.placement.ExpertAssignment;
import dev.moecluster.core.tensor.DType;
import dev.moecluster.core.tensor.RowBatch;
import dev.moecluster.proto.ExpertBatch;
import dev.moecluster.proto.ExpertResult;
import dev.moecluster.proto.ExpertServiceGrpc;
import dev.moecluster.proto.ExpertSlice;
import io.grpc.ClientCall;
import io.grpc.ManagedChannel;
import io.grpc.Metadata;
import io.grpc.Status;
import io.grpc.netty.shaded.io.grpc.netty.NettyChannelBuilder;
import io.grpc.stub.StreamObserver;
import java.lang.foreign.MemorySegment;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A worker reads batches into pooled native buffers and builds results in pooled buffers: a buffer
 * given back too early (while a slice still reads or writes it) would let the next message overwrite a batch
 * being computed. Many large batches in flight at once on several streams, between refused and
 * withdrawn ones, must give exactly what each gives alone.
 */
class PooledBuffersTest {
    @TempDir
    Path model;

    @Test
    void batchesInFlightTogetherOverReusedBuffersEqualTheSameBatchesOneAtATime() throws Exception {
        ModelConfig c = ModelGenerator.generate(ModelGenerator.Spec.tiny(Architecture.MIXTRAL), model);
        int layer = c.moeLayerList().getFirst();
        WorkerConfig config = WorkerConfig.defaults("w0", model, ExpertAssignment.parse("all", c)).withThroughput(0);
        List<ExpertBatch> batches = new ArrayList<>();
        for (int i = 0; i < 24; i++) {
            // 260-450 rows of 64 values: 33-115 KiB in bf16 or f32, in several of the pool's size classes
            batches.add(batch(i + 1, layer, 260 + 37 * i % 190, c.hiddenSize(), c.numExperts(), i % 2 == 0 ? DType.BF16 : DType.F32, i));
        }
        try (ExpertWorker worker = ExpertWorker.start(config)) {
            ManagedChannel channel = NettyChannelBuilder.forTarget(worker.address()).usePlaintext()
                    .maxInboundMessageSize(64 << 20).build();
            try {
                Map<Long, ExpertResult> alone = new ConcurrentHashMap<>();
                for (ExpertBatch b : batches) {
                    alone.putAll(send(channel, List.of(b), 1));
                }
                // three streams at once, each with a third of the batches, a non-finite batch and a withdrawal among them
                List<List<ExpertBatch>> streams = List.of(new ArrayList<>(), new ArrayList<>(), new ArrayList<>());
                for (int i = 0; i < batches.size(); i++) {
                    streams.get(i % 3).add(batches.get(i));
                }
                ExpertBatch nonFinite = batch(100, layer, 300, c.hiddenSize(), c.numExperts(), DType.F32, 99).toBuilder()
                        .setActivations(WireTensors.encode(new float[300 * c.hiddenSize()], 0, 300, c.hiddenSize(), DType.F32)
                                .toBuilder().setData(nanAt(300 * c.hiddenSize() * 4, 4 * 777)))
                        .build();
                streams.get(0).add(4, nonFinite);
                streams.get(1).add(3, ExpertBatch.newBuilder().setId(batches.get(4).getId()).setWithdraw(true).build());
                Map<Long, ExpertResult> together = new ConcurrentHashMap<>();
                List<Thread> senders = new ArrayList<>();
                for (List<ExpertBatch> s : streams) {
                    int answers = (int) s.stream().filter(b -> !b.getWithdraw()).count();
                    senders.add(Thread.ofPlatform().start(() -> together.putAll(send(channel, s, answers))));
                }
                for (Thread t : senders) {
                    t.join(60_000);
                }
                assertThat(together.get(100L).getErrorCode()).isEqualTo(Status.Code.INVALID_ARGUMENT.value());
                for (ExpertBatch b : batches) {
                    ExpertResult r = together.get(b.getId());
                    assertThat(r).as("batch %d", b.getId()).isNotNull();
                    if (r.getErrorCode() == Status.Code.CANCELLED.value()) {
                        assertThat(b.getId()).isEqualTo(batches.get(4).getId()); // withdrawn before it was computed
                        continue;
                    }
                    assertThat(r.getErrorCode()).as("batch %d: %s", b.getId(), r.getErrorMessage()).isZero();
                    assertThat(r.getOutputs().getData()).as("batch %d", b.getId()).isEqualTo(alone.get(b.getId()).getOutputs().getData());
                }
            } finally {
                channel.shutdownNow();
            }
            BufferPool buffers = worker.buffers();
            assertThat(buffers.reused()).as("buffers taken again").isGreaterThan(20);
            assertThat(buffers.retainedBytes()).isPositive().isLessThanOrEqualTo(64L << 20);
            assertEveryBufferComesBack(buffers);
        }
    }

    /**
     * The worker's own failure to take a batch (its result buffer cannot be allocated: pinned memory
     * runs out more easily than heap) answers that batch INTERNAL, so the router tries another
     * replica, gives its received buffer back, and the stream goes on.
     */
    @Test
    void aBatchWhoseResultBufferCannotBeAllocatedIsAnsweredInternalAndTheStreamGoesOn() throws Exception {
        ModelConfig c = ModelGenerator.generate(ModelGenerator.Spec.tiny(Architecture.MIXTRAL), model);
        int layer = c.moeLayerList().getFirst();
        int rows = 65536 / (2 * c.hiddenSize()); // a bf16 result of exactly 64 KiB; the message is larger
        AtomicBoolean failResults = new AtomicBoolean();
        HostAllocator failing = new HostAllocator() {
            @Override
            public MemorySegment allocate(long bytes) {
                if (failResults.get() && bytes == 65536) {
                    throw new IllegalStateException("no memory for 65536 bytes");
                }
                return HostAllocator.OFF_HEAP.allocate(bytes);
            }

            @Override
            public void free(MemorySegment segment) {}
        };
        ExpertBackend backend = new ForwardingBackend() {
            @Override
            public HostAllocator hostAllocator() {
                return failing;
            }
        };
        WorkerConfig config = WorkerConfig.defaults("w0", model, ExpertAssignment.parse("all", c)).withThroughput(0);
        try (ExpertWorker worker = ExpertWorker.start(config, backend)) {
            ManagedChannel channel = NettyChannelBuilder.forTarget(worker.address()).usePlaintext().build();
            try {
                failResults.set(true);
                ExpertResult refused = send(channel, List.of(batch(1, layer, rows, c.hiddenSize(), c.numExperts(), DType.BF16, 1)), 1).get(1L);
                assertThat(refused.getErrorCode()).isEqualTo(Status.Code.INTERNAL.value());
                assertThat(refused.getErrorMessage()).contains("w0", "no memory for 65536 bytes");
                failResults.set(false);
                ExpertResult answered = send(channel, List.of(batch(2, layer, rows, c.hiddenSize(), c.numExperts(), DType.BF16, 2)), 1).get(2L);
                assertThat(answered.getErrorCode()).as(answered.getErrorMessage()).isZero();
                assertThat(answered.getOutputs().getData().size()).isEqualTo(65536);
            } finally {
                channel.shutdownNow();
            }
            assertEveryBufferComesBack(worker.buffers());
        }
    }

    /**
     * A router that goes away with batches in flight (its stream cancelled while the worker holds
     * many batches, some parsed and queued, some computing) must not strand a buffer: on a cuda
     * worker they are pinned memory, which the garbage collector cannot take back.
     */
    @Test
    void aStreamCancelledWithBatchesInFlightGivesEveryBufferBack() throws Exception {
        ModelConfig c = ModelGenerator.generate(ModelGenerator.Spec.tiny(Architecture.MIXTRAL), model);
        int layer = c.moeLayerList().getFirst();
        WorkerConfig config = WorkerConfig.defaults("w0", model, ExpertAssignment.parse("all", c)).withThroughput(0);
        try (ExpertWorker worker = ExpertWorker.start(config)) {
            ManagedChannel channel = NettyChannelBuilder.forTarget(worker.address()).usePlaintext()
                    .maxInboundMessageSize(64 << 20).build();
            try {
                for (int round = 0; round < 3; round++) {
                    AtomicInteger answered = new AtomicInteger();
                    CountDownLatch firstAnswer = new CountDownLatch(1);
                    ClientCall<ExpertBatch, ExpertResult> call = channel.newCall(ExpertServiceGrpc.getComputeMethod(),
                            io.grpc.CallOptions.DEFAULT);
                    call.start(new ClientCall.Listener<>() {
                        @Override
                        public void onMessage(ExpertResult message) {
                            answered.incrementAndGet();
                            firstAnswer.countDown();
                            call.request(1);
                        }
                    }, new Metadata());
                    call.request(1);
                    for (int i = 0; i < 40; i++) {
                        call.sendMessage(batch(1000L * round + i, layer, 400, c.hiddenSize(), c.numExperts(), DType.F32, i));
                    }
                    assertThat(firstAnswer.await(30, TimeUnit.SECONDS)).isTrue();
                    call.cancel("the router went away", null);
                    assertThat(answered.get()).as("cancelled while batches were in flight").isLessThan(40);
                }
            } finally {
                channel.shutdownNow();
            }
            assertEveryBufferComesBack(worker.buffers());
            assertThat(worker.buffers().reused()).isPositive();
        }
    }

    /**
     * Every buffer taken is given back within 10 s. Nothing signals the moment: a result goes out
     * just before its batch's buffers are given back, and a dropped batch's buffers when its last
     * slice reports, so this polls the pool's count.
     */
    private static void assertEveryBufferComesBack(BufferPool buffers) throws InterruptedException {
        long deadline = System.nanoTime() + 10_000_000_000L;
        while (buffers.outstanding() > 0 && System.nanoTime() < deadline) {
            Thread.sleep(10);
        }
        assertThat(buffers.outstanding()).as("buffers not given back").isZero();
        assertThat(buffers.outstandingBytes()).isZero();
    }

    private static ByteString nanAt(int bytes, int at) {
        byte[] data = new byte[bytes];
        java.nio.ByteBuffer.wrap(data).order(java.nio.ByteOrder.LITTLE_ENDIAN).putFloat(at, Float.NaN);
        return ByteString.copyFrom(data);
    }

    private static ExpertBatch batch(long id, int layer, int rows, int hidden, int experts, DType dtype, long seed) {
        SplittableRandom random = new SplittableRandom(seed);
        RowBatch act = RowBatch.onHeap(dtype, rows, hidden);
        float[] row = new float[hidden];
        for (int r = 0; r < rows; r++) {
            for (int k = 0; k < hidden; k++) {
                row[k] = (float) random.nextGaussian();
            }
            act.putRow(r, row, 0, 1f);
        }
        ExpertBatch.Builder b = ExpertBatch.newBuilder().setId(id).setLayer(layer).setActivations(WireTensors.tensor(act));
        int left = rows;
        for (int e = 0; e < experts && left > 0; e++) {
            int n = e == experts - 1 ? left : Math.min(left, 1 + random.nextInt(2 * rows / experts));
            b.addSlices(ExpertSlice.newBuilder().setExpert(e).setRows(n));
            left -= n;
        }
        return b.build();
    }

    /** Sends the batches on one stream and collects {@code answers} results by id. */
    private static Map<Long, ExpertResult> send(ManagedChannel channel, List<ExpertBatch> batches, int answers) {
        Map<Long, ExpertResult> results = new ConcurrentHashMap<>();
        CountDownLatch done = new CountDownLatch(answers);
        StreamObserver<ExpertBatch> stream = ExpertServiceGrpc.newStub(channel).compute(new StreamObserver<>() {
            @Override
            public void onNext(ExpertResult r) {
                results.put(r.getId(), r);
                done.countDown();
            }

            @Override
            public void onError(Throwable t) {}

            @Override
            public void onCompleted() {}
        });
        batches.forEach(stream::onNext);
        try {
            assertThat(done.await(60, TimeUnit.SECONDS)).as("%d results, got %s", answers, results.keySet()).isTrue();
        } catch (InterruptedException e) {
            throw new AssertionError(e);
        }
        stream.onCompleted();
        return results;
    }
}
