package dev.moecluster.coordinator;

import static java.util.Objects.requireNonNull;

import java.util.Locale;

/**
 * What the routers are sized for: how many sequences are decoded at once and how long each gets,
 * where a router runs, and the memory bandwidths the decode-speed estimate divides by.
 *
 * @param concurrency sequences decoded together, over all routers (the router's {@code --max-sequences})
 * @param contextTokens tokens one sequence holds in the KV cache at its longest (prompt and generated)
 * @param device where each router runs
 * @param hostBytes memory of one CPU router host; 0 sizes a single host for the whole concurrency
 *     (ignored for GPU routers, which get one accelerator of the workers' size each)
 * @param acceleratorGbps memory bandwidth of one accelerator, GB/s (workers, and GPU routers)
 * @param hostGbps memory bandwidth of one CPU router host, GB/s
 */
public record RouterRequest(int concurrency, int contextTokens, Device device, long hostBytes, double acceleratorGbps,
        double hostGbps) {
    public static final int DEFAULT_CONCURRENCY = 64;
    public static final int DEFAULT_CONTEXT_TOKENS = 8192;
    /** H100 SXM's HBM3. */
    public static final double DEFAULT_ACCELERATOR_GBPS = 3350;
    /** What a two-socket DDR5 server sustains in a streaming read, well under its theoretical peak. */
    public static final double DEFAULT_HOST_GBPS = 300;

    /** Where a router runs the dense model. */
    public enum Device {
        /** A CPU host: the router's {@code --backend cpu}, what runs today. */
        CPU,
        /** One accelerator of the workers' memory: the router's {@code --backend cuda}. */
        GPU;

        public String cliName() {
            return name().toLowerCase(Locale.ROOT);
        }

        public static Device parse(String name) {
            return switch (name.toLowerCase(Locale.ROOT)) {
                case "cpu" -> CPU;
                case "gpu", "cuda" -> GPU;
                default -> throw new IllegalArgumentException("router device must be cpu or gpu, got '" + name + "'");
            };
        }
    }

    public RouterRequest {
        requireNonNull(device, "device is null");
        if (concurrency < 1) {
            throw new IllegalArgumentException("concurrency must be at least 1, got " + concurrency);
        }
        if (contextTokens < 1) {
            throw new IllegalArgumentException("context must be at least 1 token, got " + contextTokens);
        }
        if (hostBytes < 0) {
            throw new IllegalArgumentException("router host memory must not be negative, got " + hostBytes + " bytes");
        }
        if (!(acceleratorGbps > 0) || !(hostGbps > 0)) {
            throw new IllegalArgumentException("memory bandwidths must be positive, got accelerator " + acceleratorGbps
                    + " GB/s, host " + hostGbps + " GB/s");
        }
    }

    /** 64 sequences of 8192 tokens on one CPU router host sized to fit, H100 and DDR5 bandwidths. */
    public static RouterRequest defaults() {
        return new RouterRequest(DEFAULT_CONCURRENCY, DEFAULT_CONTEXT_TOKENS, Device.CPU, 0, DEFAULT_ACCELERATOR_GBPS,
                DEFAULT_HOST_GBPS);
    }

    public RouterRequest withConcurrency(int n) {
        return new RouterRequest(n, contextTokens, device, hostBytes, acceleratorGbps, hostGbps);
    }

    public RouterRequest withContextTokens(int n) {
        return new RouterRequest(concurrency, n, device, hostBytes, acceleratorGbps, hostGbps);
    }

    public RouterRequest withDevice(Device d) {
        return new RouterRequest(concurrency, contextTokens, d, hostBytes, acceleratorGbps, hostGbps);
    }

    public RouterRequest withHostBytes(long bytes) {
        return new RouterRequest(concurrency, contextTokens, device, bytes, acceleratorGbps, hostGbps);
    }

    public RouterRequest withBandwidths(double accelerator, double host) {
        return new RouterRequest(concurrency, contextTokens, device, hostBytes, accelerator, host);
    }

    /** Bandwidth of the memory a router reads its weights and KV cache from, bytes per second. */
    public double routerBytesPerSecond() {
        return (device == Device.GPU ? acceleratorGbps : hostGbps) * 1e9;
    }
}
