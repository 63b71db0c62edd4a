package dev.moecluster.control;

import static java.util.Objects.requireNonNull;

import io.prometheus.metrics.core.metrics.Info;
import io.prometheus.metrics.exporter.httpserver.HTTPServer;
import io.prometheus.metrics.instrumentation.jvm.JvmMetrics;
import io.prometheus.metrics.model.registry.PrometheusRegistry;
import java.io.IOException;

/**
 * One component's Prometheus registry (with the JVM metrics in it) and the HTTP server that serves it
 * on {@code /metrics}. Each component has its own registry, so several components in one process
 * (a local cluster) expose only their own series.
 */
public final class MetricsEndpoint implements AutoCloseable {
    /** The {@code --metrics-port} value that serves no metrics (the registry is still kept). */
    public static final int OFF = -1;

    private final PrometheusRegistry registry;
    private final HTTPServer server;

    private MetricsEndpoint(PrometheusRegistry registry, HTTPServer server) {
        this.registry = registry;
        this.server = server;
    }

    /**
     * A fresh registry with JVM metrics and {@code moe_build_info{component, version}} (always 1: which
     * version each component runs, e.g. during a rolling upgrade), served on {@code host:port};
     * {@code 0} picks a free port, {@link #OFF} serves nothing.
     */
    public static MetricsEndpoint start(String component, String host, int port) throws IOException {
        requireNonNull(component, "component is null");
        requireNonNull(host, "host is null");
        requirePort(port);
        PrometheusRegistry registry = new PrometheusRegistry();
        JvmMetrics.builder().register(registry);
        Info.builder().name("moe_build_info").help("The moe-cluster version this component runs")
                .labelNames("component", "version").register(registry)
                .addLabelValues(component, BuildInfo.version());
        HTTPServer server;
        try {
            server = port == OFF ? null : HTTPServer.builder().hostname(host).port(port).registry(registry).buildAndStart();
        } catch (java.net.BindException e) {
            // the JDK says only "Address already in use"; say which address, and what to do
            throw new IOException("cannot serve " + component + " metrics on " + host + ":" + port + ": " + e.getMessage()
                    + " (choose another --metrics-port, 0 for a free one, or -1 for none)", e);
        }
        return new MetricsEndpoint(registry, server);
    }

    /** Fails unless {@code port} is a valid {@code --metrics-port}: {@link #OFF}, 0 (free) or 1..65535. */
    public static int requirePort(int port) {
        if (port < OFF || port > 65535) {
            throw new IllegalArgumentException("metrics port must be -1 (off), 0 (free port) or 1..65535, got " + port);
        }
        return port;
    }

    public PrometheusRegistry registry() {
        return registry;
    }

    /** The port {@code /metrics} is served on, or {@link #OFF}. */
    public int port() {
        return server == null ? OFF : server.getPort();
    }

    @Override
    public void close() {
        if (server != null) {
            server.close();
        }
    }
}
