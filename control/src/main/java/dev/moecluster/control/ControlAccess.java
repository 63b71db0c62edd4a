package dev.moecluster.control;

import dev.moecluster.proto.ControlGrpc;
import io.grpc.Metadata;
import io.grpc.ServerCall;
import io.grpc.ServerCallHandler;
import io.grpc.ServerInterceptor;
import io.grpc.Status;
import java.util.Set;

/**
 * Who may call the coordinators' {@code Control} service, by role: its worker methods (heartbeat, the
 * assignment stream) take the worker token, its router methods (heartbeat, the placement stream) the
 * router token. A role without a token is open to whoever reaches the port (and passes TLS, if on).
 *
 * @param workers the token workers present ({@code --worker-token-file}); null leaves the worker methods open
 * @param routers the token routers present ({@code --router-token-file}); null leaves the router methods open
 */
public record ControlAccess(BearerToken workers, BearerToken routers) {
    /** No tokens: both roles open. */
    public static final ControlAccess OPEN = new ControlAccess(null, null);

    static final Set<String> WORKER_METHODS = Set.of(ControlGrpc.getWorkerHeartbeatMethod().getFullMethodName(),
            ControlGrpc.getWatchAssignmentMethod().getFullMethodName());
    static final Set<String> ROUTER_METHODS = Set.of(ControlGrpc.getRouterHeartbeatMethod().getFullMethodName(),
            ControlGrpc.getWatchPlacementMethod().getFullMethodName());

    public boolean open() {
        return workers == null && routers == null;
    }

    /**
     * UNAUTHENTICATED for a call without its role's token, PERMISSION_DENIED for one that presents the
     * other role's token (a router cannot register a worker, a worker cannot report routed load).
     */
    public ServerInterceptor serverInterceptor() {
        return new ServerInterceptor() {
            @Override
            public <Q, R> ServerCall.Listener<Q> interceptCall(ServerCall<Q, R> call, Metadata headers,
                    ServerCallHandler<Q, R> next) {
                String method = call.getMethodDescriptor().getFullMethodName();
                boolean workerMethod = WORKER_METHODS.contains(method);
                BearerToken required = workerMethod ? workers : ROUTER_METHODS.contains(method) ? routers : null;
                if (required == null) {
                    return next.startCall(call, headers);
                }
                String presented = BearerToken.presented(headers);
                if (required.matches(presented)) {
                    return next.startCall(call, headers);
                }
                BearerToken other = workerMethod ? routers : workers;
                if (other != null && other.matches(presented)) {
                    return BearerToken.refuse(call, Status.PERMISSION_DENIED.withDescription("a " + (workerMethod ? "router" : "worker")
                            + " token cannot call " + method + ": it takes the " + (workerMethod ? "worker" : "router") + " token"));
                }
                return BearerToken.refuse(call, Status.UNAUTHENTICATED.withDescription((presented == null ? "missing" : "invalid")
                        + " " + (workerMethod ? "worker" : "router") + " token for " + method));
            }
        };
    }

    @Override
    public String toString() {
        return "ControlAccess[workers " + (workers == null ? "open" : "token") + ", routers " + (routers == null ? "open" : "token") + "]";
    }
}
