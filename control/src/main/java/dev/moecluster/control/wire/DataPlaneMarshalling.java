package dev.moecluster.control.wire;

import com.google.protobuf.CodedInputStream;
import com.google.protobuf.InvalidProtocolBufferException;
import com.google.protobuf.Message;
import com.google.protobuf.UnsafeByteOperations;
import dev.moecluster.proto.ExpertBatch;
import dev.moecluster.proto.ExpertResult;
import dev.moecluster.proto.ExpertServiceGrpc;
import io.grpc.BindableService;
import io.grpc.HasByteBuffer;
import io.grpc.KnownLength;
import io.grpc.MethodDescriptor;
import io.grpc.ServerMethodDefinition;
import io.grpc.ServerServiceDefinition;
import io.grpc.ServiceDescriptor;
import io.grpc.Status;
import io.grpc.protobuf.ProtoUtils;
import io.grpc.stub.ServerCalls;
import java.io.IOException;
import java.io.InputStream;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;

/**
 * The data plane's marshalling: {@code ExpertService.Compute} keeps the protobuf wire contract but
 * parses without copying the activations. A received message is read once out of Netty's buffers
 * into one buffer (bulk copies through {@link HasByteBuffer} where the transport offers it) and
 * parsed with aliasing, so the {@code Tensor.data} of a batch or result is a view of that buffer
 * that {@link WireTensors#rows} hands on as it is. A worker reads batches into native buffers of its
 * {@link BufferPool} (pinned memory on a {@code cuda} worker) and hands them on as
 * {@link ReceivedBatch}es, which give the buffer back when done; the router's results get new
 * arrays. Outgoing messages use protobuf's {@code Drainable} stream, which writes the wrapped
 * activations into the transport's buffers (from native memory through the encoder's small
 * buffer, which stays in the cache). One copy each way between our buffer and Netty's, none in between.
 */
public final class DataPlaneMarshalling {
    private static final MethodDescriptor<ExpertBatch, ExpertResult> COMPUTE = ExpertServiceGrpc.getComputeMethod()
            .toBuilder(new AliasingMarshaller<>(ExpertBatch.getDefaultInstance()),
                    new AliasingMarshaller<>(ExpertResult.getDefaultInstance()))
            .build();

    private DataPlaneMarshalling() {}

    /** {@code ExpertService.Compute} with the aliasing marshallers, for clients' {@code newCall}. */
    public static MethodDescriptor<ExpertBatch, ExpertResult> computeMethod() {
        return COMPUTE;
    }

    /**
     * The service's definition with {@code Compute} served by {@code compute}, which receives each
     * batch read into a buffer of {@code pool}; the other methods as {@code expertService} binds them.
     */
    public static ServerServiceDefinition bind(BindableService expertService, BufferPool pool,
            ServerCalls.BidiStreamingMethod<ReceivedBatch, ExpertResult> compute) {
        MethodDescriptor<ReceivedBatch, ExpertResult> receiving = receivingMethod(pool);
        ServerServiceDefinition plain = expertService.bindService();
        ServiceDescriptor descriptor = plain.getServiceDescriptor();
        ServiceDescriptor.Builder service = ServiceDescriptor.newBuilder(descriptor.getName())
                .setSchemaDescriptor(descriptor.getSchemaDescriptor());
        for (MethodDescriptor<?, ?> m : descriptor.getMethods()) {
            service.addMethod(m.getFullMethodName().equals(receiving.getFullMethodName()) ? receiving : m);
        }
        ServerServiceDefinition.Builder bound = ServerServiceDefinition.builder(service.build());
        for (ServerMethodDefinition<?, ?> m : plain.getMethods()) {
            if (m.getMethodDescriptor().getFullMethodName().equals(receiving.getFullMethodName())) {
                bound.addMethod(receiving, ServerCalls.asyncBidiStreamingCall(compute));
            } else {
                bound.addMethod(m);
            }
        }
        return bound.build();
    }

    /** {@code ExpertService.Compute} as a worker serves it: batches read into buffers of {@code pool}. */
    public static MethodDescriptor<ReceivedBatch, ExpertResult> receivingMethod(BufferPool pool) {
        return ExpertServiceGrpc.getComputeMethod().toBuilder(new ReceivingMarshaller(pool), COMPUTE.getResponseMarshaller()).build();
    }

    /** Reads a batch into a buffer of the worker's pool and parses it with aliasing. */
    private static final class ReceivingMarshaller implements MethodDescriptor.Marshaller<ReceivedBatch> {
        private final BufferPool pool;

        ReceivingMarshaller(BufferPool pool) {
            this.pool = pool;
        }

        @Override
        public InputStream stream(ReceivedBatch value) {
            return COMPUTE.getRequestMarshaller().stream(value.batch());
        }

        @Override
        public ReceivedBatch parse(InputStream stream) {
            MemorySegment buffer = null;
            try {
                byte[] unknown = stream instanceof KnownLength ? null : stream.readAllBytes(); // not from gRPC's transport
                int length = unknown != null ? unknown.length : stream.available();
                buffer = pool.take(length);
                MemorySegment message = buffer.asSlice(0, length);
                if (unknown != null) {
                    MemorySegment.copy(MemorySegment.ofArray(unknown), 0, message, 0, length);
                } else {
                    readFully(stream, message);
                }
                ReceivedBatch received = new ReceivedBatch(
                        AliasingMarshaller.parse(ExpertBatch.getDefaultInstance(), message), pool, buffer);
                buffer = null;
                return received;
            } catch (IOException e) {
                throw Status.INTERNAL.withDescription("cannot read message: " + e.getMessage()).withCause(e).asRuntimeException();
            } finally {
                if (buffer != null) {
                    pool.give(buffer);
                }
            }
        }
    }

    /** Reads a whole message into one array and parses it with aliasing; writes as protobuf does. */
    static final class AliasingMarshaller<T extends Message> implements MethodDescriptor.PrototypeMarshaller<T> {
        private final T prototype;
        private final MethodDescriptor.Marshaller<T> writer;

        AliasingMarshaller(T prototype) {
            this.prototype = prototype;
            this.writer = ProtoUtils.marshaller(prototype);
        }

        @Override
        public T getMessagePrototype() {
            return prototype;
        }

        @Override
        @SuppressWarnings("unchecked")
        public Class<T> getMessageClass() {
            return (Class<T>) prototype.getClass();
        }

        @Override
        public InputStream stream(T value) {
            return writer.stream(value);
        }

        @Override
        public T parse(InputStream stream) {
            try {
                byte[] bytes;
                if (stream instanceof KnownLength) {
                    bytes = new byte[stream.available()];
                    readFully(stream, MemorySegment.ofArray(bytes));
                } else {
                    bytes = stream.readAllBytes();
                }
                return parse(prototype, MemorySegment.ofArray(bytes));
            } catch (IOException e) {
                throw Status.INTERNAL.withDescription("cannot read message: " + e.getMessage()).withCause(e).asRuntimeException();
            }
        }

        /**
         * Parses {@code message} with aliasing: its memory must be the message's alone from here on,
         * as long as the message is used.
         */
        @SuppressWarnings("unchecked")
        static <T extends Message> T parse(T prototype, MemorySegment message) {
            try {
                // Aliasing takes effect only on input protobuf knows to be immutable: a wrapped
                // ByteString's coded input says so (for an array and for native memory alike).
                CodedInputStream in = UnsafeByteOperations.unsafeWrap(message.asByteBuffer()).newCodedInput();
                in.enableAliasing(true);
                in.setSizeLimit(Integer.MAX_VALUE);
                T parsed = (T) prototype.getParserForType().parseFrom(in);
                in.checkLastTagWas(0);
                return parsed;
            } catch (InvalidProtocolBufferException e) {
                throw Status.INVALID_ARGUMENT.withDescription("malformed " + prototype.getClass().getSimpleName()
                        + ": " + e.getMessage()).withCause(e).asRuntimeException();
            }
        }
    }

    /** Fills {@code dst} with the next bytes of a message: bulk copies out of the transport's buffers where it offers them. */
    static void readFully(InputStream stream, MemorySegment dst) throws IOException {
        long length = dst.byteSize();
        long at = 0;
        if (stream instanceof HasByteBuffer buffers && buffers.byteBufferSupported()) {
            ByteBuffer b;
            while (at < length && (b = buffers.getByteBuffer()) != null) {
                int n = (int) Math.min(b.remaining(), length - at);
                MemorySegment.copy(MemorySegment.ofBuffer(b), 0, dst, at, n);
                at += n;
                stream.skipNBytes(n);
            }
        }
        // An array is read into in place; native memory through a chunk.
        boolean inPlace = dst.heapBase().orElse(null) instanceof byte[];
        byte[] chunk = inPlace ? (byte[]) dst.heapBase().get() : at < length ? new byte[(int) Math.min(length - at, 64 << 10)] : null;
        while (at < length) {
            int n = inPlace
                    ? stream.read(chunk, (int) (dst.address() + at), (int) (length - at))
                    : stream.read(chunk, 0, (int) Math.min(chunk.length, length - at));
            if (n < 0) {
                throw new IOException("message ended after " + at + " of " + length + " bytes");
            }
            if (!inPlace) {
                MemorySegment.copy(MemorySegment.ofArray(chunk), 0, dst, at, n);
            }
            at += n;
        }
    }
}
