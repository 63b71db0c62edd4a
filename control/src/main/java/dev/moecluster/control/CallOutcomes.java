package dev.moecluster.control;

import io.grpc.Context;
import io.grpc.ForwardingServerCall;
import io.grpc.Metadata;
import io.grpc.MethodDescriptor;
import io.grpc.ServerCall;
import io.grpc.ServerCallHandler;
import io.grpc.ServerInterceptor;
import io.grpc.ServerMethodDefinition;
import io.grpc.ServerServiceDefinition;
import io.grpc.ServerStreamTracer;
import io.grpc.Status;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.concurrent.atomic.AtomicBoolean;

/**
 * Hands each call to an endpoint's own services to a {@link GrpcEndpoint.CallCounter} once, with the code it
 * ended with. Two views of one call make that exact: the status the server closes it with, seen outside every
 * other layer (so malformed requests, refused tokens and the services' own answers count alike, and before the
 * client can see them), and the transport's status for calls the server never answered: cancelled by the
 * client, past their deadline, or refused by the transport itself (a message over the size limit).
 */
final class CallOutcomes implements ServerInterceptor {
    private static final Context.Key<Outcome> OUTCOME = Context.key("moe-call-outcome");
    private static final ServerStreamTracer UNCOUNTED = new ServerStreamTracer() {};

    private final Set<String> methods = new HashSet<>();
    private final GrpcEndpoint.CallCounter counter;

    /** Counts calls to the methods of {@code services}; calls to anything else (health, reflection) are not counted. */
    CallOutcomes(List<ServerServiceDefinition> services, GrpcEndpoint.CallCounter counter) {
        this.counter = counter;
        for (ServerServiceDefinition s : services) {
            for (ServerMethodDefinition<?, ?> m : s.getMethods()) {
                methods.add(m.getMethodDescriptor().getFullMethodName());
            }
        }
    }

    /** One tracer per stream, carried into the call's context so the interceptor finds it. */
    ServerStreamTracer.Factory tracers() {
        return new ServerStreamTracer.Factory() {
            @Override
            public ServerStreamTracer newServerStreamTracer(String fullMethodName, Metadata headers) {
                // only known names: a client must not be able to add series by calling made-up methods
                return methods.contains(fullMethodName)
                        ? new Outcome(MethodDescriptor.extractBareMethodName(fullMethodName)) : UNCOUNTED;
            }
        };
    }

    @Override
    public <Q, R> ServerCall.Listener<Q> interceptCall(ServerCall<Q, R> call, Metadata headers, ServerCallHandler<Q, R> next) {
        Outcome outcome = OUTCOME.get();
        if (outcome == null) {
            return next.startCall(call, headers);
        }
        // the call's own context: cancelled as soon as the client goes or the deadline passes
        Context context = Context.current();
        return next.startCall(new ForwardingServerCall.SimpleForwardingServerCall<>(call) {
            @Override
            public void close(Status status, Metadata trailers) {
                // an answer to a call already abandoned does not reach the client; the transport's status counts
                if (!context.isCancelled()) {
                    outcome.end(status.getCode());
                }
                super.close(status, trailers);
            }
        }, headers);
    }

    /** The end of one counted call: whichever of the server's answer and the transport's close comes first. */
    private final class Outcome extends ServerStreamTracer {
        private final String method;
        private final AtomicBoolean ended = new AtomicBoolean();

        Outcome(String method) {
            this.method = method;
        }

        @Override
        public Context filterContext(Context context) {
            return context.withValue(OUTCOME, this);
        }

        @Override
        public void streamClosed(Status status) {
            end(status.getCode());
        }

        void end(Status.Code code) {
            if (ended.compareAndSet(false, true)) {
                counter.count(method, code);
            }
        }
    }
}
