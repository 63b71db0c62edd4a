package dev.moecluster.bench;

import static java.util.Objects.requireNonNull;

import dev.moecluster.core.model.ModelConfig;
import dev.moecluster.core.moe.ReferenceMoeBlock;
import dev.moecluster.core.tensor.DType;
import dev.moecluster.core.tensor.FloatMatrix;
import dev.moecluster.control.wire.WireTensors;
import dev.moecluster.proto.MoeForwardRequest;
import dev.moecluster.proto.MoeForwardResponse;
import dev.moecluster.proto.RouterGrpc;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.HdrHistogram.Recorder;

/**
 * Drives MoeForward traffic at a router and measures it: throughput, latency percentiles and,
 * optionally, agreement with the in-process {@link ReferenceMoeBlock}. The same load can run
 * against the reference alone, so distributed and in-process figures come from one run.
 */
public final class MoeForwardLoad {
    /**
     * @param requests calls to make
     * @param tokens tokens (rows) per call
     * @param concurrency calls in flight at once
     * @param dtype dtype of the hidden states sent
     * @param verify compare every response with the reference (costs a reference forward per call)
     */
    public record Options(int requests, int tokens, int concurrency, DType dtype, long seed, boolean verify) {
        public Options {
            if (requests < 1 || tokens < 1 || concurrency < 1) {
                throw new IllegalArgumentException("requests, tokens and concurrency must be positive");
            }
            requireNonNull(dtype, "dtype is null");
        }
    }

    /** What one run measured. Latencies are in microseconds. */
    public record Report(int requests, long tokens, double seconds, long p50Micros, long p99Micros,
            double maxRelativeError, int verified) {
        public double tokensPerSecond() {
            return tokens / seconds;
        }
    }

    private final String model;
    private final int hidden;
    private final List<Integer> moeLayers;
    private final ReferenceMoeBlock reference;

    /**
     * @param model the model name sent in requests
     * @param reference the in-process block to verify against or run as the baseline; may be null
     */
    /** Distinct inputs a run cycles through. */
    private static final int INPUT_POOL = 16;

    public MoeForwardLoad(String model, int hidden, List<Integer> moeLayers, ReferenceMoeBlock reference) {
        this.model = requireNonNull(model, "model is null");
        this.hidden = hidden;
        this.moeLayers = List.copyOf(moeLayers);
        this.reference = reference;
        if (this.moeLayers.isEmpty()) {
            throw new IllegalArgumentException("the model has no MoE layers");
        }
    }

    public MoeForwardLoad(ModelConfig config, ReferenceMoeBlock reference) {
        this(config.name(), config.hiddenSize(), config.moeLayerList(), reference);
    }

    /** Hidden states for call {@code i}: Gaussian, rounded to the dtype they are sent in. */
    public FloatMatrix input(Options o, int i) {
        SplittableRandom r = new SplittableRandom(o.seed() * 1_000_003L + i);
        float[] v = new float[o.tokens() * hidden];
        for (int j = 0; j < v.length; j++) {
            v[j] = (float) r.nextGaussian();
        }
        return WireTensors.decode(WireTensors.encode(v, 0, o.tokens(), hidden, o.dtype()), "input");
    }

    /** The MoE layer call {@code i} goes to: the MoE layers in turn. */
    public int layer(int i) {
        return moeLayers.get(i % moeLayers.size());
    }

    /** Sends the load to a router. */
    public Report runAgainst(RouterGrpc.RouterBlockingStub router, Options o) throws InterruptedException {
        if (o.verify() && reference == null) {
            throw new IllegalArgumentException("verification needs the reference block");
        }
        return run(o, (layer, x) -> {
            MoeForwardResponse resp = router.withDeadlineAfter(60, TimeUnit.SECONDS).moeForward(MoeForwardRequest.newBuilder()
                    .setModel(model)
                    .setLayer(layer)
                    .setHiddenStates(WireTensors.encode(x, o.dtype()))
                    .build());
            return WireTensors.decode(resp.getOutput(), "output");
        });
    }

    /** Runs the same load in process on the reference, for the baseline. */
    public Report runInProcess(Options o) throws InterruptedException {
        requireNonNull(reference, "no reference block to run in process");
        return run(new Options(o.requests(), o.tokens(), o.concurrency(), o.dtype(), o.seed(), false),
                (layer, x) -> reference.forward(layer, x).output());
    }

    @FunctionalInterface
    private interface Call {
        FloatMatrix forward(int layer, FloatMatrix x);
    }

    private Report run(Options o, Call call) throws InterruptedException {
        Recorder latency = new Recorder(3);
        AtomicInteger next = new AtomicInteger();
        double[] maxError = new double[o.concurrency()];
        int[] verified = new int[o.concurrency()];
        ExecutorService pool = Executors.newFixedThreadPool(o.concurrency());
        // Inputs are made before the clock starts: generating Gaussians is the load generator's cost, not the system's.
        FloatMatrix[] inputs = new FloatMatrix[Math.min(o.requests(), INPUT_POOL)];
        for (int i = 0; i < inputs.length; i++) {
            inputs[i] = input(o, i);
        }
        long start = System.nanoTime();
        try {
            List<Future<?>> futures = new ArrayList<>();
            for (int c = 0; c < o.concurrency(); c++) {
                int slot = c;
                futures.add(pool.submit(() -> {
                    int i;
                    while ((i = next.getAndIncrement()) < o.requests()) {
                        FloatMatrix x = inputs[i % inputs.length];
                        int layer = layer(i);
                        long t0 = System.nanoTime();
                        FloatMatrix y = call.forward(layer, x);
                        latency.recordValue((System.nanoTime() - t0) / 1000);
                        if (o.verify()) {
                            FloatMatrix ref = reference.forward(layer, x).output();
                            maxError[slot] = Math.max(maxError[slot], relativeError(y, ref));
                            verified[slot]++;
                        }
                    }
                    return null;
                }));
            }
            for (Future<?> f : futures) {
                try {
                    f.get();
                } catch (java.util.concurrent.ExecutionException e) {
                    throw new IllegalStateException("load failed: " + e.getCause().getMessage(), e.getCause());
                }
            }
        } finally {
            pool.shutdownNow();
        }
        double seconds = (System.nanoTime() - start) / 1e9;
        var h = latency.getIntervalHistogram();
        double worst = 0;
        int checked = 0;
        for (int c = 0; c < o.concurrency(); c++) {
            worst = Math.max(worst, maxError[c]);
            checked += verified[c];
        }
        return new Report(o.requests(), (long) o.requests() * o.tokens(), seconds, h.getValueAtPercentile(50),
                h.getValueAtPercentile(99), worst, checked);
    }

    /** ‖a − b‖₂ / ‖b‖₂ over all elements. */
    public static double relativeError(FloatMatrix a, FloatMatrix b) {
        if (a.rows() != b.rows() || a.cols() != b.cols()) {
            return Double.POSITIVE_INFINITY;
        }
        double diff = 0;
        double norm = 0;
        for (int i = 0; i < a.data().length; i++) {
            double d = a.data()[i] - b.data()[i];
            diff += d * d;
            norm += (double) b.data()[i] * b.data()[i];
        }
        return norm == 0 ? Math.sqrt(diff) : Math.sqrt(diff / norm);
    }
}
