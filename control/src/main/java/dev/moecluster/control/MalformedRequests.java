package dev.moecluster.control;

import io.grpc.Attributes;
import io.grpc.Metadata;
import io.grpc.MethodDescriptor;
import io.grpc.SecurityLevel;
import io.grpc.ServerCall;
import io.grpc.ServerCallHandler;
import io.grpc.ServerMethodDefinition;
import io.grpc.ServerServiceDefinition;
import io.grpc.ServiceDescriptor;
import io.grpc.Status;
import java.io.InputStream;
import java.util.ArrayList;
import java.util.List;
import java.util.logging.Level;
import java.util.logging.Logger;

/**
 * Parses requests on the service's behalf, so a message that is not valid protobuf (or has a string
 * that is not UTF-8) gets INVALID_ARGUMENT. Left to gRPC, the parse failure escapes as "Application
 * error processing RPC" (UNKNOWN) with a SEVERE stack trace per request. Every status the service
 * closes a call with is {@link ErrorText#bounded bounded} on the way out.
 */
final class MalformedRequests {
    private static final Logger LOG = Logger.getLogger(MalformedRequests.class.getName());

    private static final MethodDescriptor.Marshaller<InputStream> RAW = new MethodDescriptor.Marshaller<>() {
        @Override
        public InputStream stream(InputStream value) {
            return value;
        }

        @Override
        public InputStream parse(InputStream stream) {
            return stream;
        }
    };

    private MalformedRequests() {}

    /** {@code service} taking raw requests and parsing them itself. */
    static ServerServiceDefinition guard(ServerServiceDefinition service) {
        ServiceDescriptor original = service.getServiceDescriptor();
        ServiceDescriptor.Builder descriptor = ServiceDescriptor.newBuilder(original.getName())
                .setSchemaDescriptor(original.getSchemaDescriptor());
        List<ServerMethodDefinition<InputStream, ?>> methods = new ArrayList<>();
        for (ServerMethodDefinition<?, ?> m : service.getMethods()) {
            ServerMethodDefinition<InputStream, ?> raw = guard(m);
            methods.add(raw);
            descriptor.addMethod(raw.getMethodDescriptor());
        }
        ServerServiceDefinition.Builder out = ServerServiceDefinition.builder(descriptor.build());
        methods.forEach(out::addMethod);
        return out.build();
    }

    private static <Q, R> ServerMethodDefinition<InputStream, R> guard(ServerMethodDefinition<Q, R> method) {
        MethodDescriptor<Q, R> typed = method.getMethodDescriptor();
        ServerCallHandler<Q, R> handler = method.getServerCallHandler();
        return ServerMethodDefinition.create(typed.toBuilder(RAW, typed.getResponseMarshaller()).build(), (call, headers) -> {
            TypedCall<Q, R> typedCall = new TypedCall<>(call, typed);
            return new ParsingListener<>(handler.startCall(typedCall, headers), typedCall);
        });
    }

    /** The raw call as the service sees it: typed requests, bounded statuses. */
    private static final class TypedCall<Q, R> extends ServerCall<Q, R> {
        private final ServerCall<InputStream, R> raw;
        private final MethodDescriptor<Q, R> method;
        private volatile boolean closed;

        TypedCall(ServerCall<InputStream, R> raw, MethodDescriptor<Q, R> method) {
            this.raw = raw;
            this.method = method;
        }

        boolean closed() {
            return closed;
        }

        @Override
        public void request(int numMessages) {
            raw.request(numMessages);
        }

        @Override
        public void sendHeaders(Metadata headers) {
            raw.sendHeaders(headers);
        }

        @Override
        public void sendMessage(R message) {
            raw.sendMessage(message);
        }

        @Override
        public void close(Status status, Metadata trailers) {
            closed = true;
            raw.close(ErrorText.bounded(status), trailers);
        }

        @Override
        public boolean isCancelled() {
            return raw.isCancelled();
        }

        @Override
        public boolean isReady() {
            return raw.isReady();
        }

        @Override
        public void setMessageCompression(boolean enabled) {
            raw.setMessageCompression(enabled);
        }

        @Override
        public void setCompression(String compressor) {
            raw.setCompression(compressor);
        }

        @Override
        public void setOnReadyThreshold(int numBytes) {
            raw.setOnReadyThreshold(numBytes);
        }

        @Override
        public Attributes getAttributes() {
            return raw.getAttributes();
        }

        @Override
        public String getAuthority() {
            return raw.getAuthority();
        }

        @Override
        public SecurityLevel getSecurityLevel() {
            return raw.getSecurityLevel();
        }

        @Override
        public MethodDescriptor<Q, R> getMethodDescriptor() {
            return method;
        }
    }

    /** Parses each request; after a malformed one the call is closed and the service hears nothing more but its end. */
    private static final class ParsingListener<Q> extends ServerCall.Listener<InputStream> {
        private final ServerCall.Listener<Q> service;
        private final TypedCall<Q, ?> call;
        private boolean rejected;

        ParsingListener(ServerCall.Listener<Q> service, TypedCall<Q, ?> call) {
            this.service = service;
            this.call = call;
        }

        @Override
        public void onMessage(InputStream message) {
            if (rejected || call.closed()) {
                return; // the service already answered (a refused token, say): no need to parse
            }
            Q request;
            try {
                request = call.getMethodDescriptor().parseRequest(message);
            } catch (RuntimeException e) {
                rejected = true;
                Throwable cause = e.getCause() != null ? e.getCause() : e;
                String why = "request to " + call.getMethodDescriptor().getFullMethodName() + " is not a valid message: "
                        + cause.getMessage();
                LOG.log(Level.FINE, why, e);
                call.close(Status.INVALID_ARGUMENT.withDescription(why), new Metadata());
                return;
            }
            service.onMessage(request);
        }

        @Override
        public void onHalfClose() {
            if (!rejected) {
                service.onHalfClose();
            }
        }

        @Override
        public void onReady() {
            if (!rejected) {
                service.onReady();
            }
        }

        @Override
        public void onCancel() {
            service.onCancel();
        }

        @Override
        public void onComplete() {
            service.onComplete();
        }
    }
}
