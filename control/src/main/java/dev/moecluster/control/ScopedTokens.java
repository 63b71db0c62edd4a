package dev.moecluster.control;

import static java.util.Objects.requireNonNull;

import io.grpc.Metadata;
import io.grpc.ServerCall;
import io.grpc.ServerCallHandler;
import io.grpc.ServerInterceptor;
import io.grpc.Status;
import java.util.Set;

/**
 * Bearer tokens by role: a {@code write} token may call every method of a service, a {@code read}
 * token only the methods its service names read-only (views, never changes). Both follow their files
 * as {@link BearerToken} does.
 *
 * @param write tokens allowed everything
 * @param read tokens allowed the read-only methods; null when only write tokens exist
 */
public record ScopedTokens(BearerToken write, BearerToken read) {
    public ScopedTokens {
        requireNonNull(write, "write is null (a read-only token without a write token would leave no one able to act)");
    }

    /**
     * Refuses a call that presents no token, or one of neither role, with UNAUTHENTICATED, and a read
     * token on a method outside {@code readOnlyMethods} (full names, {@code moe.v1.Admin/Status}) with
     * PERMISSION_DENIED.
     */
    public ServerInterceptor serverInterceptor(Set<String> readOnlyMethods) {
        Set<String> readOnly = Set.copyOf(readOnlyMethods);
        return new ServerInterceptor() {
            @Override
            public <Q, R> ServerCall.Listener<Q> interceptCall(ServerCall<Q, R> call, Metadata headers,
                    ServerCallHandler<Q, R> next) {
                String token = BearerToken.presented(headers);
                if (write.matches(token)) {
                    return next.startCall(call, headers);
                }
                String method = call.getMethodDescriptor().getFullMethodName();
                if (read != null && read.matches(token)) {
                    if (readOnly.contains(method)) {
                        return next.startCall(call, headers);
                    }
                    return BearerToken.refuse(call, Status.PERMISSION_DENIED.withDescription(
                            "a read-only token cannot call " + method + ": it needs a write token"));
                }
                return BearerToken.refuse(call, Status.UNAUTHENTICATED.withDescription(
                        headers.containsKey(BearerToken.AUTHORIZATION) ? "invalid bearer token" : "missing bearer token"));
            }
        };
    }

    @Override
    public String toString() {
        return "ScopedTokens[redacted]";
    }
}
