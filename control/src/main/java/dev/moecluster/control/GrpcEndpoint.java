package dev.moecluster.control;

import io.grpc.Server;
import io.grpc.ServerServiceDefinition;
import io.grpc.health.v1.HealthCheckResponse.ServingStatus;
import io.grpc.netty.shaded.io.grpc.netty.NettyServerBuilder;
import io.grpc.protobuf.services.HealthStatusManager;
import io.grpc.protobuf.services.ProtoReflectionServiceV1;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;

/**
 * The one way components serve gRPC: a Netty server on {@code host:port} with the component's
 * services, gRPC health and server reflection. Health answers three kinds of names: {@value #LIVENESS}
 * is SERVING from start until the endpoint stops; {@code ""} ({@link #READINESS}) is NOT_SERVING until
 * the component calls {@link #ready(boolean) ready(true)}; each service's own name is SERVING while
 * started. {@link #close()} drains in-flight calls for up to 5 s; {@link #kill()} drops them, as a
 * crash would. Either may be called more than once.
 */
public final class GrpcEndpoint implements AutoCloseable {
    /** Health service name of readiness: may this component take traffic now. */
    public static final String READINESS = "";
    /** Health service name of liveness: the process runs and need not be restarted. */
    public static final String LIVENESS = "liveness";
    private static final long DRAIN_SECONDS = 5;

    private final Server server;
    private final HealthStatusManager health = new HealthStatusManager();
    private final AtomicBoolean stopped = new AtomicBoolean();

    private GrpcEndpoint(String host, int port, int maxInboundMessageBytes, List<ServerServiceDefinition> services)
            throws IOException {
        NettyServerBuilder builder = NettyServerBuilder.forAddress(new InetSocketAddress(host, port))
                .maxInboundMessageSize(maxInboundMessageBytes)
                .addService(health.getHealthService())
                .addService(ProtoReflectionServiceV1.newInstance());
        services.forEach(builder::addService);
        this.server = builder.build().start();
        reportStarted();
        for (ServerServiceDefinition s : services) {
            health.setStatus(s.getServiceDescriptor().getName(), ServingStatus.SERVING);
        }
    }

    /** Starts serving {@code services}; port 0 picks a free one. */
    public static GrpcEndpoint start(String host, int port, int maxInboundMessageBytes, List<ServerServiceDefinition> services)
            throws IOException {
        return new GrpcEndpoint(host, port, maxInboundMessageBytes, services);
    }

    /** Liveness SERVING, readiness NOT_SERVING: a component is alive before it can take traffic. */
    private void reportStarted() {
        health.setStatus(LIVENESS, ServingStatus.SERVING);
        health.setStatus(READINESS, ServingStatus.NOT_SERVING);
    }

    /**
     * Sets readiness ({@code ""}): SERVING when the component can take traffic, NOT_SERVING while it
     * cannot (loading, draining, stopping). Ignored once the endpoint stopped (everything is
     * NOT_SERVING then).
     */
    public void ready(boolean ready) {
        if (!stopped.get()) {
            health.setStatus(READINESS, ready ? ServingStatus.SERVING : ServingStatus.NOT_SERVING);
        }
    }

    public int port() {
        return server.getPort();
    }

    public void awaitTermination() throws InterruptedException {
        server.awaitTermination();
    }

    /** Fails in-flight calls at once. */
    public void kill() {
        if (stopped.compareAndSet(false, true)) {
            health.enterTerminalState();
        }
        server.shutdownNow();
    }

    /** Stops taking calls, lets in-flight ones finish for up to 5 s, then fails the rest. */
    @Override
    public void close() {
        if (!stopped.compareAndSet(false, true)) {
            server.shutdownNow();
            return;
        }
        health.enterTerminalState();
        server.shutdown();
        try {
            if (!server.awaitTermination(DRAIN_SECONDS, TimeUnit.SECONDS)) {
                server.shutdownNow();
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            server.shutdownNow();
        }
    }
}
