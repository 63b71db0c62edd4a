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
import java.nio.ByteBuffer;

/**
 * The data plane's marshalling: {@code ExpertService.Compute} keeps the protobuf wire contract but
 * parses without copying the activations. A received message is read once out of Netty's buffers
 * into one array (bulk copies through {@link HasByteBuffer} where the transport offers it) and
 * parsed with aliasing, so the {@code Tensor.data} of a batch or result is a view of that array
 * that {@link WireTensors#rows} hands on as it is. A worker reads batches into arrays of its
 * {@link ArrayPool} and hands them on as {@link ReceivedBatch}es, which give the array back when
 * done; the router's results get new arrays. Outgoing messages use protobuf's {@code Drainable}
 * stream, which writes a wrapped activation array straight into the transport's buffers. One copy
 * each way between our buffer and Netty's, none in between.
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
     * batch read into an array of {@code pool}; the other methods as {@code expertService} binds them.
     */
    public static ServerServiceDefinition bind(BindableService expertService, ArrayPool pool,
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

    /** {@code ExpertService.Compute} as a worker serves it: batches read into arrays of {@code pool}. */
    public static MethodDescriptor<ReceivedBatch, ExpertResult> receivingMethod(ArrayPool pool) {
        return ExpertServiceGrpc.getComputeMethod().toBuilder(new ReceivingMarshaller(pool), COMPUTE.getResponseMarshaller()).build();
    }

    /** Reads a batch into an array of the worker's pool and parses it with aliasing. */
    private static final class ReceivingMarshaller implements MethodDescriptor.Marshaller<ReceivedBatch> {
        private final ArrayPool pool;

        ReceivingMarshaller(ArrayPool pool) {
            this.pool = pool;
        }

        @Override
        public InputStream stream(ReceivedBatch value) {
            return COMPUTE.getRequestMarshaller().stream(value.batch());
        }

        @Override
        public ReceivedBatch parse(InputStream stream) {
            byte[] bytes = null;
            try {
                int length = stream instanceof KnownLength ? stream.available() : -1;
                if (length < 0) {
                    bytes = stream.readAllBytes(); // not from gRPC's transport: no pooling
                    length = bytes.length;
                } else {
                    bytes = pool.take(length);
                    readFully(stream, bytes, length);
                }
                ReceivedBatch received = new ReceivedBatch(
                        AliasingMarshaller.parse(ExpertBatch.getDefaultInstance(), bytes, length), pool, bytes);
                bytes = null;
                return received;
            } catch (IOException e) {
                throw Status.INTERNAL.withDescription("cannot read message: " + e.getMessage()).withCause(e).asRuntimeException();
            } finally {
                if (bytes != null) {
                    pool.give(bytes);
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
                    readFully(stream, bytes, bytes.length);
                } else {
                    bytes = stream.readAllBytes();
                }
                return parse(prototype, bytes, bytes.length);
            } catch (IOException e) {
                throw Status.INTERNAL.withDescription("cannot read message: " + e.getMessage()).withCause(e).asRuntimeException();
            }
        }

        /**
         * Parses the first {@code length} bytes with aliasing: the array must be the message's alone
         * from here on, as long as the message is used.
         */
        @SuppressWarnings("unchecked")
        static <T extends Message> T parse(T prototype, byte[] bytes, int length) {
            try {
                // Aliasing takes effect only on input protobuf knows to be immutable: a wrapped
                // ByteString's coded input says so.
                CodedInputStream in = UnsafeByteOperations.unsafeWrap(bytes, 0, length).newCodedInput();
                in.enableAliasing(true);
                in.setSizeLimit(Integer.MAX_VALUE);
                T message = (T) prototype.getParserForType().parseFrom(in);
                in.checkLastTagWas(0);
                return message;
            } catch (InvalidProtocolBufferException e) {
                throw Status.INVALID_ARGUMENT.withDescription("malformed " + prototype.getClass().getSimpleName()
                        + ": " + e.getMessage()).withCause(e).asRuntimeException();
            }
        }
    }

    /** Reads {@code length} bytes of a message into {@code bytes}: bulk copies out of the transport's buffers where it offers them. */
    static void readFully(InputStream stream, byte[] bytes, int length) throws IOException {
        int at = 0;
        if (stream instanceof HasByteBuffer buffers && buffers.byteBufferSupported()) {
            ByteBuffer b;
            while (at < length && (b = buffers.getByteBuffer()) != null) {
                int n = Math.min(b.remaining(), length - at);
                b.get(bytes, at, n);
                at += n;
                stream.skipNBytes(n);
            }
        }
        while (at < length) {
            int n = stream.read(bytes, at, length - at);
            if (n < 0) {
                throw new IOException("message ended after " + at + " of " + length + " bytes");
            }
            at += n;
        }
    }
}
