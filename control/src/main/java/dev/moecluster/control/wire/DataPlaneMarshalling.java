package dev.moecluster.control.wire;

import com.google.protobuf.CodedInputStream;
import com.google.protobuf.InvalidProtocolBufferException;
import com.google.protobuf.Message;
import com.google.protobuf.Parser;
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
import java.io.IOException;
import java.io.InputStream;
import java.nio.ByteBuffer;

/**
 * The data plane's marshalling: {@code ExpertService.Compute} keeps the protobuf wire contract but
 * parses without copying the activations. A received message is read once out of Netty's buffers
 * into one array (bulk copies through {@link HasByteBuffer} where the transport offers it) and
 * parsed with aliasing, so the {@code Tensor.data} of a batch or result is a view of that array
 * that {@link WireTensors#rows} hands on as it is. Outgoing messages use protobuf's
 * {@code Drainable} stream, which writes a wrapped activation array straight into the transport's
 * buffers. One copy each way between our buffer and Netty's, none in between.
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

    /** The service's definition with {@code Compute} bound to the aliasing marshallers. */
    @SuppressWarnings("unchecked")
    public static ServerServiceDefinition bind(BindableService expertService) {
        ServerServiceDefinition plain = expertService.bindService();
        ServiceDescriptor descriptor = plain.getServiceDescriptor();
        ServiceDescriptor.Builder service = ServiceDescriptor.newBuilder(descriptor.getName())
                .setSchemaDescriptor(descriptor.getSchemaDescriptor());
        for (MethodDescriptor<?, ?> m : descriptor.getMethods()) {
            service.addMethod(m.getFullMethodName().equals(COMPUTE.getFullMethodName()) ? COMPUTE : m);
        }
        ServerServiceDefinition.Builder bound = ServerServiceDefinition.builder(service.build());
        for (ServerMethodDefinition<?, ?> m : plain.getMethods()) {
            if (m.getMethodDescriptor().getFullMethodName().equals(COMPUTE.getFullMethodName())) {
                bound.addMethod(ServerMethodDefinition.create(COMPUTE,
                        ((ServerMethodDefinition<ExpertBatch, ExpertResult>) m).getServerCallHandler()));
            } else {
                bound.addMethod(m);
            }
        }
        return bound.build();
    }

    /** Reads a whole message into one array and parses it with aliasing; writes as protobuf does. */
    static final class AliasingMarshaller<T extends Message> implements MethodDescriptor.PrototypeMarshaller<T> {
        private final T prototype;
        private final Parser<T> parser;
        private final MethodDescriptor.Marshaller<T> writer;

        @SuppressWarnings("unchecked")
        AliasingMarshaller(T prototype) {
            this.prototype = prototype;
            this.parser = (Parser<T>) prototype.getParserForType();
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
                byte[] bytes = readAll(stream);
                // Aliasing takes effect only on input protobuf knows to be immutable: the array is ours
                // alone from here on, and a wrapped ByteString's coded input says so.
                CodedInputStream in = UnsafeByteOperations.unsafeWrap(bytes).newCodedInput();
                in.enableAliasing(true);
                in.setSizeLimit(Integer.MAX_VALUE);
                T message = parser.parseFrom(in);
                in.checkLastTagWas(0);
                return message;
            } catch (InvalidProtocolBufferException e) {
                throw Status.INVALID_ARGUMENT.withDescription("malformed " + prototype.getClass().getSimpleName()
                        + ": " + e.getMessage()).withCause(e).asRuntimeException();
            } catch (IOException e) {
                throw Status.INTERNAL.withDescription("cannot read message: " + e.getMessage()).withCause(e).asRuntimeException();
            }
        }

        /** The whole message in one new array: {@code parse} aliases it, so it must not be shared. */
        static byte[] readAll(InputStream stream) throws IOException {
            if (!(stream instanceof KnownLength)) {
                return stream.readAllBytes();
            }
            byte[] bytes = new byte[stream.available()];
            int at = 0;
            if (stream instanceof HasByteBuffer buffers && buffers.byteBufferSupported()) {
                ByteBuffer b;
                while (at < bytes.length && (b = buffers.getByteBuffer()) != null) {
                    int n = Math.min(b.remaining(), bytes.length - at);
                    b.get(bytes, at, n);
                    at += n;
                    stream.skipNBytes(n);
                }
            }
            while (at < bytes.length) {
                int n = stream.read(bytes, at, bytes.length - at);
                if (n < 0) {
                    throw new IOException("message ended after " + at + " of " + bytes.length + " bytes");
                }
                at += n;
            }
            return bytes;
        }
    }
}
