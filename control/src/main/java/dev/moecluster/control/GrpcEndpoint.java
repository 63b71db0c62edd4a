package dev.moecluster.control;

import io.grpc.InsecureServerCredentials;
import io.grpc.Server;
import io.grpc.ServerCredentials;
import io.grpc.ServerInterceptors;
import io.grpc.ServerServiceDefinition;
import io.grpc.Status;
import io.grpc.health.v1.HealthCheckResponse.ServingStatus;
import io.grpc.netty.shaded.io.grpc.netty.NettyServerBuilder;
import io.grpc.protobuf.services.HealthStatusManager;
import io.grpc.protobuf.services.ProtoReflectionService;
import io.grpc.protobuf.services.ProtoReflectionServiceV1;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;

/**
 * The one way components serve gRPC: a Netty server on {@code host:port} with the component's
 * services, gRPC health and server reflection (v1, and v1alpha for older tools). Health answers three kinds of names: {@value #LIVENESS}
 * is SERVING from start until the endpoint stops; {@code ""} ({@link #READINESS}) is NOT_SERVING until
 * the component calls {@link #ready(boolean) ready(true)}; each service's own name is SERVING while
 * started. {@link #close()} drains in-flight calls for up to 5 s; {@link #kill()} drops them, as a
 * crash would. Either may be called more than once. Optionally the port speaks TLS, and a second,
 * plaintext port serves only gRPC health with the same statuses (for probes when the main port
 * requires client certificates). Requests are parsed with malformed ones refused as INVALID_ARGUMENT, every
 * status sent is {@link ErrorText#bounded bounded}, and clients may send keepalive pings every 10 s. Given a
 * {@link CallCounter}, every call to the component's services is counted once with the code it ended with.
 */
public final class GrpcEndpoint implements AutoCloseable {
    /** Health service name of readiness: may this component take traffic now. */
    public static final String READINESS = "";
    /** Health service name of liveness: the process runs and need not be restarted. */
    public static final String LIVENESS = "liveness";
    private static final long DRAIN_SECONDS = 5;
    /**
     * Clients may ping this often (the router's worker channels ping every 30 s, Netty clients at most
     * every 10 s); gRPC's default of 5 min sends such clients away with GOAWAY too_many_pings.
     */
    static final long PERMIT_KEEPALIVE_SECONDS = 10;
    /** {@code --health-port} value for no separate health port. */
    public static final int NO_HEALTH_PORT = -1;

    private final Server server;
    private final Server healthServer; // null without a separate health port
    private final HealthStatusManager health = new HealthStatusManager();
    private final AtomicBoolean stopped = new AtomicBoolean();

    /**
     * Hears how each call to a component's services ended: the method's bare name and the final code, including
     * calls refused before any handler ran (malformed, too large, unauthenticated) and calls the client abandoned
     * ({@code CANCELLED}, {@code DEADLINE_EXCEEDED}) whatever the handler answered later.
     */
    @FunctionalInterface
    public interface CallCounter {
        void count(String method, Status.Code code);
    }

    private GrpcEndpoint(String host, int port, int maxInboundMessageBytes, List<ServerServiceDefinition> services,
            TlsConfig tls, int healthPort, CallCounter calls) throws IOException {
        NettyServerBuilder builder = NettyServerBuilder.forAddress(new InetSocketAddress(host, port), credentials(tls))
                .maxInboundMessageSize(maxInboundMessageBytes)
                .permitKeepAliveTime(PERMIT_KEEPALIVE_SECONDS, TimeUnit.SECONDS)
                .permitKeepAliveWithoutCalls(true)
                .addService(MalformedRequests.guard(health.getHealthService().bindService()))
                .addService(MalformedRequests.guard(ProtoReflectionServiceV1.newInstance().bindService()))
                .addService(MalformedRequests.guard(reflectionV1Alpha()));
        if (calls == null) {
            services.forEach(s -> builder.addService(MalformedRequests.guard(s)));
        } else {
            // outside the guard and every interceptor of the service, so every refusal is seen
            CallOutcomes outcomes = new CallOutcomes(services, calls);
            builder.addStreamTracerFactory(outcomes.tracers());
            services.forEach(s -> builder.addService(ServerInterceptors.intercept(MalformedRequests.guard(s), outcomes)));
        }
        try {
            this.server = builder.build().start();
        } catch (IOException e) {
            // grpc's own message names the address but not what to do, and its cause says only "Address already in use"
            throw new IOException("cannot serve gRPC on " + host + ":" + port + ": " + rootMessage(e)
                    + " (another process has the port? choose another --port, or 0 for a free one)", e);
        }
        this.healthServer = startHealthServer(host, healthPort);
        reportStarted();
        for (ServerServiceDefinition s : services) {
            health.setStatus(s.getServiceDescriptor().getName(), ServingStatus.SERVING);
        }
    }

    /**
     * grpc.reflection.v1alpha, which grpc-java deprecates in favour of v1 but which older grpcurl, Postman and
     * grpc_cli releases still ask for first.
     */
    @SuppressWarnings("deprecation")
    private static ServerServiceDefinition reflectionV1Alpha() {
        return ProtoReflectionService.newInstance().bindService();
    }

    /** Starts serving {@code services}; port 0 picks a free one. */
    public static GrpcEndpoint start(String host, int port, int maxInboundMessageBytes, List<ServerServiceDefinition> services)
            throws IOException {
        return new GrpcEndpoint(host, port, maxInboundMessageBytes, services, null, NO_HEALTH_PORT, null);
    }

    /**
     * Starts serving {@code services} over TLS when {@code tls} is not null (client certificates
     * required when it has a CA), with gRPC health alone on the plaintext {@code healthPort} unless it
     * is {@link #NO_HEALTH_PORT}; port 0 picks a free one for either.
     */
    public static GrpcEndpoint start(String host, int port, int maxInboundMessageBytes, List<ServerServiceDefinition> services,
            TlsConfig tls, int healthPort) throws IOException {
        return start(host, port, maxInboundMessageBytes, services, tls, healthPort, null);
    }

    /** As {@link #start(String, int, int, List, TlsConfig, int)}, counting every call to {@code services} with {@code calls} unless it is null. */
    public static GrpcEndpoint start(String host, int port, int maxInboundMessageBytes, List<ServerServiceDefinition> services,
            TlsConfig tls, int healthPort, CallCounter calls) throws IOException {
        requireHealthPort(healthPort);
        return new GrpcEndpoint(host, port, maxInboundMessageBytes, services, tls, healthPort, calls);
    }

    private static String rootMessage(Throwable e) {
        Throwable t = e;
        while (t.getCause() != null) {
            t = t.getCause();
        }
        return t.getMessage() != null ? t.getMessage() : t.toString();
    }

    /** Fails unless {@code port} is a valid {@code --health-port}: -1 (none), 0 (free port) or 1..65535. */
    public static int requireHealthPort(int port) {
        if (port < NO_HEALTH_PORT || port > 65535) {
            throw new IllegalArgumentException("health port must be -1 (none), 0 (free port) or 1..65535, got " + port);
        }
        return port;
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

    /** Port of the plaintext health-only server, or {@link #NO_HEALTH_PORT} when there is none. */
    public int healthPort() {
        return healthServer == null ? NO_HEALTH_PORT : healthServer.getPort();
    }

    private static ServerCredentials credentials(TlsConfig tls) {
        return tls == null ? InsecureServerCredentials.create() : tls.serverCredentials();
    }

    private Server startHealthServer(String host, int healthPort) throws IOException {
        if (healthPort == NO_HEALTH_PORT) {
            return null;
        }
        try {
            return NettyServerBuilder.forAddress(new InetSocketAddress(host, healthPort), InsecureServerCredentials.create())
                    .addService(health.getHealthService())
                    .build()
                    .start();
        } catch (IOException | RuntimeException e) {
            server.shutdownNow();
            throw new IOException("cannot serve health on " + host + ":" + healthPort + ": " + e.getMessage(), e);
        }
    }

    /** The health port answers until the main port has stopped, so probes see NOT_SERVING meanwhile. */
    private void stopHealthServer() {
        if (healthServer != null) {
            healthServer.shutdownNow();
        }
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
        stopHealthServer();
    }

    /**
     * Stops taking calls, lets in-flight ones finish for up to 5 s, then fails the rest and waits up
     * to 5 s more for their handlers to return (so what they use may be freed after this).
     */
    @Override
    public void close() {
        if (stopped.compareAndSet(false, true)) {
            health.enterTerminalState();
            server.shutdown();
            awaitTermination(DRAIN_SECONDS);
        }
        server.shutdownNow();
        awaitTermination(DRAIN_SECONDS);
        stopHealthServer();
    }

    private void awaitTermination(long seconds) {
        try {
            server.awaitTermination(seconds, TimeUnit.SECONDS);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }
}
