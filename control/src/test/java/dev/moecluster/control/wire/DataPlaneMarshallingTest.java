package dev.moecluster.control.wire;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.moecluster.core.tensor.DType;
import dev.moecluster.core.tensor.RowBatch;
import dev.moecluster.proto.DescribeRequest;
import dev.moecluster.proto.ExpertBatch;
import dev.moecluster.proto.ExpertResult;
import dev.moecluster.proto.ExpertServiceGrpc;
import dev.moecluster.proto.ExpertSlice;
import dev.moecluster.proto.WorkerDescription;
import io.grpc.CallOptions;
import io.grpc.ManagedChannel;
import io.grpc.Server;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.netty.shaded.io.grpc.netty.NettyChannelBuilder;
import io.grpc.netty.shaded.io.grpc.netty.NettyServerBuilder;
import io.grpc.stub.ClientCalls;
import io.grpc.stub.StreamObserver;
import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.lang.foreign.MemorySegment;
import java.net.InetSocketAddress;
import java.util.SplittableRandom;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

class DataPlaneMarshallingTest {
    private static ExpertBatch batch(DType dtype, int rows, int width, long seed) {
        SplittableRandom r = new SplittableRandom(seed);
        RowBatch act = RowBatch.onHeap(dtype, rows, width);
        float[] row = new float[width];
        for (int i = 0; i < rows; i++) {
            for (int c = 0; c < width; c++) {
                row[c] = (float) r.nextGaussian();
            }
            act.putRow(i, row, 0, 1f);
        }
        return ExpertBatch.newBuilder().setId(seed).setLayer(3)
                .addSlices(ExpertSlice.newBuilder().setExpert(1).setRows(rows - 1))
                .addSlices(ExpertSlice.newBuilder().setExpert(5).setRows(1))
                .setActivations(WireTensors.tensor(act)).build();
    }

    @ParameterizedTest
    @EnumSource(value = DType.class, names = {"BF16", "FP8_E4M3", "F32"})
    void writesAndReadsTheSameBytesAsTheProtobufPath(DType dtype) throws Exception {
        ExpertBatch message = batch(dtype, 9, 1000, 7);
        var method = DataPlaneMarshalling.computeMethod();
        ByteArrayOutputStream written = new ByteArrayOutputStream();
        method.streamRequest(message).transferTo(written);
        assertThat(written.toByteArray()).isEqualTo(message.toByteArray());
        ExpertBatch parsed = method.parseRequest(new ByteArrayInputStream(message.toByteArray()));
        assertThat(parsed).isEqualTo(ExpertBatch.parseFrom(message.toByteArray()));
        assertThat(parsed.toByteArray()).isEqualTo(message.toByteArray());
    }

    /**
     * The parsed activations are a view of the array the message was read into, not a copy: protobuf
     * hands out a bounded view of its input only when it aliases (a copy is a literal ByteString), so
     * the class says which; and the view's bytes are the message's.
     */
    @Test
    void parsedActivationsAliasTheReceivedBytes() throws Exception {
        ExpertBatch message = batch(DType.BF16, 4, 32, 3);
        ExpertBatch parsed = DataPlaneMarshalling.computeMethod().parseRequest(new KnownLengthStream(message.toByteArray()));
        assertThat(parsed.getActivations().getData().getClass().getSimpleName()).isEqualTo("BoundedByteString");
        ExpertBatch copied = ExpertBatch.parseFrom(message.toByteArray());
        assertThat(copied.getActivations().getData().getClass().getSimpleName()).isEqualTo("LiteralByteString");
        assertThat(parsed.getActivations().getData()).isEqualTo(message.getActivations().getData());
    }

    /** A stream that knows its length, as gRPC's transport streams do. */
    private static final class KnownLengthStream extends ByteArrayInputStream implements io.grpc.KnownLength {
        KnownLengthStream(byte[] bytes) {
            super(bytes);
        }
    }

    @Test
    void malformedBytesAreInvalidArgument() {
        byte[] bytes = batch(DType.BF16, 2, 8, 1).toByteArray();
        byte[] cut = java.util.Arrays.copyOf(bytes, bytes.length - 5);
        assertThatThrownBy(() -> DataPlaneMarshalling.computeMethod().parseRequest(new ByteArrayInputStream(cut)))
                .isInstanceOf(StatusRuntimeException.class)
                .satisfies(e -> assertThat(Status.fromThrowable(e).getCode()).isEqualTo(Status.Code.INVALID_ARGUMENT));
    }

    /** Through real gRPC over loopback both ways: what the server reads is what the client sent, byte for byte. */
    @ParameterizedTest
    @EnumSource(value = DType.class, names = {"BF16", "FP8_E4M3", "F32"})
    void roundTripsThroughAStreamOverLoopbackUnchanged(DType dtype) throws Exception {
        ExpertServiceGrpc.ExpertServiceImplBase describe = new ExpertServiceGrpc.ExpertServiceImplBase() {
            @Override
            public void describe(DescribeRequest request, StreamObserver<WorkerDescription> out) {
                out.onNext(WorkerDescription.newBuilder().setWorkerId("echo").build());
                out.onCompleted();
            }
        };
        BufferPool pool = new BufferPool(HostAllocator.OFF_HEAP);
        io.grpc.stub.ServerCalls.BidiStreamingMethod<ReceivedBatch, ExpertResult> echo = results -> new StreamObserver<>() {
            @Override
            public void onNext(ReceivedBatch received) {
                ExpertBatch b = received.batch();
                // the activations as the server parsed them: a view of the received bytes, copied into
                // a result over another pooled buffer before the received one goes back
                RowBatch rows = WireTensors.rows(b.getActivations(), "activations");
                assertThat(rows.data().isNative()).as("activations parsed in place, in native memory").isTrue();
                MemorySegment out = pool.take(RowBatch.wireBytes(rows.dtype(), rows.rows(), rows.width()));
                RowBatch copy = RowBatch.over(out, rows.dtype(), rows.rows(), rows.width());
                copy.copyFrom(rows, 0);
                received.release();
                results.onNext(ExpertResult.newBuilder().setId(b.getId()).setOutputs(WireTensors.tensor(copy)).build());
                pool.give(out); // gRPC copied the result into its buffers in onNext
            }

            @Override
            public void onError(Throwable t) {}

            @Override
            public void onCompleted() {
                results.onCompleted();
            }
        };
        Server server = NettyServerBuilder.forAddress(new InetSocketAddress("127.0.0.1", 0))
                .addService(DataPlaneMarshalling.bind(describe, pool, echo)).maxInboundMessageSize(64 << 20).build().start();
        ManagedChannel channel = NettyChannelBuilder.forTarget("127.0.0.1:" + server.getPort()).usePlaintext()
                .maxInboundMessageSize(64 << 20).build();
        try {
            LinkedBlockingQueue<Object> got = new LinkedBlockingQueue<>();
            StreamObserver<ExpertBatch> requests = ClientCalls.asyncBidiStreamingCall(
                    channel.newCall(DataPlaneMarshalling.computeMethod(), CallOptions.DEFAULT), new StreamObserver<>() {
                        @Override
                        public void onNext(ExpertResult value) {
                            got.add(value);
                        }

                        @Override
                        public void onError(Throwable t) {
                            got.add(t);
                        }

                        @Override
                        public void onCompleted() {}
                    });
            ExpertBatch small = batch(dtype, 3, 64, 1);
            ExpertBatch large = batch(dtype, 300, 4096, 2); // several HTTP/2 frames
            ExpertBatch other = batch(dtype, 280, 4096, 3); // same size class: reads into an array the large one gave back
            requests.onNext(small);
            requests.onNext(large);
            requests.onNext(other);
            for (ExpertBatch sent : new ExpertBatch[] {small, large, other}) {
                Object o = got.poll(30, TimeUnit.SECONDS);
                assertThat(o).isInstanceOf(ExpertResult.class);
                ExpertResult r = (ExpertResult) o;
                assertThat(r.getId()).isEqualTo(sent.getId());
                assertThat(r.getOutputs().toByteArray()).isEqualTo(sent.getActivations().toByteArray());
            }
            requests.onCompleted();
            // the large batch and its result gave their arrays back, and the other batch and its result took them
            assertThat(pool.reused()).isEqualTo(2);
            assertThat(pool.retainedBytes()).isPositive();
            // Describe still uses the generated stubs' marshallers on the same service.
            assertThat(ExpertServiceGrpc.newBlockingStub(channel).describe(DescribeRequest.getDefaultInstance()).getWorkerId())
                    .isEqualTo("echo");
        } finally {
            channel.shutdownNow();
            server.shutdownNow();
        }
    }
}
