package dev.moecluster.router;

import static java.util.Objects.requireNonNull;

import dev.moecluster.core.moe.GateResult;
import dev.moecluster.core.placement.ExpertPlacement;
import dev.moecluster.core.tensor.DType;
import dev.moecluster.core.tensor.FloatMatrix;
import dev.moecluster.core.tensor.WireTensors;
import dev.moecluster.proto.ExpertBatch;
import dev.moecluster.proto.ExpertResult;
import dev.moecluster.proto.ExpertSlice;
import io.grpc.ChannelCredentials;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicReference;
import java.util.concurrent.CompletionException;
import java.util.concurrent.atomic.AtomicLong;

/**
 * Sends a MoE layer's routed rows to the expert workers and combines what comes back.
 *
 * <p>For one layer call: rows are grouped by expert; each expert goes to one of its replicas (the
 * one with the fewest outstanding rows, counting what this call already assigned); each worker gets
 * one {@link ExpertBatch}; results are scatter-added into the output, weighted by the gate unless the
 * architecture scaled the input instead. A worker that fails or misses its deadline has its experts
 * resent to other replicas at once (expert compute is pure, so a resend is always safe); only an
 * expert with no replica left fails the call, with UNAVAILABLE naming it.
 */
final class MoeDispatcher {
    private static final java.util.logging.Logger LOG = java.util.logging.Logger.getLogger(MoeDispatcher.class.getName());

    private final AtomicReference<ExpertPlacement> placement;
    private final Map<String, WorkerChannel> channels = new ConcurrentHashMap<>();
    private final int maxInboundMessageBytes;
    private final DType wireDtype;
    private final Duration expertTimeout;
    private final DispatchStats stats;
    private final AtomicLong batchIds = new AtomicLong();
    private final ChannelCredentials workerCredentials;

    MoeDispatcher(ExpertPlacement placement, int maxInboundMessageBytes, DType wireDtype, Duration expertTimeout,
            DispatchStats stats, ChannelCredentials workerCredentials) {
        this.placement = new AtomicReference<>(requireNonNull(placement, "placement is null"));
        this.maxInboundMessageBytes = maxInboundMessageBytes;
        this.wireDtype = requireNonNull(wireDtype, "wireDtype is null");
        this.expertTimeout = requireNonNull(expertTimeout, "expertTimeout is null");
        this.stats = requireNonNull(stats, "stats is null");
        this.workerCredentials = requireNonNull(workerCredentials, "workerCredentials is null");
    }

    /** The placement new calls use. */
    ExpertPlacement placement() {
        return placement.get();
    }

    /**
     * Switches to a newer placement: calls that start from now on use it, calls in flight finish on
     * the one they started with. Older or equal epochs are ignored.
     */
    boolean update(ExpertPlacement next) {
        ExpertPlacement prev = placement.getAndUpdate(cur -> next.epoch() > cur.epoch() ? next : cur);
        if (next.epoch() > prev.epoch()) {
            LOG.info("routing with placement epoch " + next.epoch() + " (" + next.workers().size() + " workers)");
            return true;
        }
        return false;
    }

    private WorkerChannel channel(String address) {
        return channels.computeIfAbsent(address, a -> {
            stats.knowWorker(a);
            return new WorkerChannel(a, maxInboundMessageBytes, workerCredentials);
        });
    }

    void close() {
        channels.values().forEach(WorkerChannel::close);
        channels.clear();
    }

    /** The rows of one expert in this call: indices into the gate result's (token, slot) pairs. */
    private record ExpertRows(int expert, int[] slots) {}

    /** What went to one worker and is awaited. */
    private record Sent(int worker, List<ExpertRows> experts, CompletableFuture<ExpertResult> result, long bytesOut) {}

    /**
     * Runs the routed experts of {@code layer} for {@code x} and returns their combined output
     * ({@code tokens × H}). {@code overlap} runs on the calling thread while the workers compute.
     *
     * @throws StatusRuntimeException UNAVAILABLE when an expert has no working replica
     */
    float[] dispatch(int layer, FloatMatrix x, GateResult gate, Runnable overlap) {
        ExpertPlacement placement = this.placement.get();
        int h = x.cols();
        float[] out = new float[x.rows() * h];
        List<ExpertRows> todo = groupByExpert(layer, gate);
        Set<Integer> failed = new HashSet<>();
        Map<Integer, String> lastError = new LinkedHashMap<>();
        boolean overlapped = false;
        while (!todo.isEmpty()) {
            Map<Integer, List<ExpertRows>> byWorker = assign(placement, layer, todo, failed, lastError);
            List<Sent> sent = new ArrayList<>(byWorker.size());
            for (Map.Entry<Integer, List<ExpertRows>> e : byWorker.entrySet()) {
                sent.add(send(placement, layer, e.getKey(), e.getValue(), x, gate));
            }
            if (!overlapped) {
                overlapped = true;
                overlap.run();
            }
            todo = new ArrayList<>();
            for (Sent s : sent) {
                String error = awaitAndCombine(s, gate, h, out);
                if (error != null) {
                    failed.add(s.worker());
                    lastError.put(s.worker(), error);
                    stats.recordFailover(placement.workers().get(s.worker()));
                    todo.addAll(s.experts());
                }
            }
        }
        return out;
    }

    private static List<ExpertRows> groupByExpert(int layer, GateResult gate) {
        int[] experts = gate.experts();
        Map<Integer, List<Integer>> slots = new java.util.TreeMap<>();
        for (int i = 0; i < experts.length; i++) {
            slots.computeIfAbsent(experts[i], e -> new ArrayList<>()).add(i);
        }
        List<ExpertRows> groups = new ArrayList<>(slots.size());
        slots.forEach((e, list) -> groups.add(new ExpertRows(e, list.stream().mapToInt(Integer::intValue).toArray())));
        return groups;
    }

    /** Picks a replica per expert, avoiding workers that failed in this call. */
    private Map<Integer, List<ExpertRows>> assign(ExpertPlacement placement, int layer, List<ExpertRows> todo,
            Set<Integer> failed, Map<Integer, String> lastError) {
        Map<Integer, List<ExpertRows>> byWorker = new LinkedHashMap<>();
        long[] planned = new long[placement.workers().size()];
        for (ExpertRows g : todo) {
            int best = -1;
            long bestLoad = Long.MAX_VALUE;
            boolean bestHealthy = false;
            int[] replicas = placement.replicas(layer, g.expert());
            for (int w : replicas) {
                if (failed.contains(w)) {
                    continue;
                }
                WorkerChannel c = channel(placement.workers().get(w));
                long load = c.outstandingRows() + planned[w];
                boolean healthy = c.healthy();
                if (best < 0 || (healthy && !bestHealthy) || (healthy == bestHealthy && load < bestLoad)) {
                    best = w;
                    bestLoad = load;
                    bestHealthy = healthy;
                }
            }
            if (best < 0) {
                throw unavailable(placement, layer, g.expert(), replicas, lastError);
            }
            planned[best] += g.slots().length;
            byWorker.computeIfAbsent(best, w -> new ArrayList<>()).add(g);
        }
        return byWorker;
    }

    private static StatusRuntimeException unavailable(ExpertPlacement placement, int layer, int expert, int[] replicas,
            Map<Integer, String> lastError) {
        if (replicas.length == 0) {
            return Status.UNAVAILABLE.withDescription("expert " + expert + " of layer " + layer
                    + " is not placed on any worker" + (placement.workers().isEmpty()
                            ? " (no placement yet: waiting for the coordinator)" : "")).asRuntimeException();
        }
        StringBuilder why = new StringBuilder();
        for (int w : replicas) {
            why.append(why.isEmpty() ? "" : "; ").append(placement.workers().get(w)).append(": ")
                    .append(lastError.getOrDefault(w, "not tried"));
        }
        return Status.UNAVAILABLE.withDescription("expert " + expert + " of layer " + layer + " is unavailable: all "
                + replicas.length + " replica(s) failed (" + why + ")").asRuntimeException();
    }

    private Sent send(ExpertPlacement placement, int layer, int worker, List<ExpertRows> experts, FloatMatrix x,
            GateResult gate) {
        int h = x.cols();
        int k = gate.k();
        int rows = 0;
        for (ExpertRows g : experts) {
            rows += g.slots().length;
        }
        float[] act = new float[rows * h];
        ExpertBatch.Builder batch = ExpertBatch.newBuilder().setId(batchIds.incrementAndGet()).setLayer(layer);
        int r = 0;
        for (ExpertRows g : experts) {
            batch.addSlices(ExpertSlice.newBuilder().setExpert(g.expert()).setRows(g.slots().length));
            stats.recordRows(layer, g.expert(), g.slots().length);
            for (int slot : g.slots()) {
                int t = slot / k;
                float scale = gate.scalesInput() ? gate.weights()[slot] : 1f;
                int src = t * h;
                int dst = r * h;
                if (scale == 1f) {
                    System.arraycopy(x.data(), src, act, dst, h);
                } else {
                    for (int c = 0; c < h; c++) {
                        act[dst + c] = x.data()[src + c] * scale;
                    }
                }
                r++;
            }
        }
        batch.setActivations(WireTensors.encode(act, 0, rows, h, wireDtype));
        ExpertBatch message = batch.build();
        String address = placement.workers().get(worker);
        long started = System.nanoTime();
        CompletableFuture<ExpertResult> result = channel(address).send(message, rows, expertTimeout);
        result.whenComplete((ignored, error) -> stats.recordWorkerLatency(address, System.nanoTime() - started));
        long bytesOut = message.getSerializedSize();
        return new Sent(worker, experts, result, bytesOut);
    }

    /** Waits for one worker's result and adds it into {@code out}; returns an error text on failure. */
    private String awaitAndCombine(Sent s, GateResult gate, int h, float[] out) {
        ExpertResult result;
        try {
            result = s.result().join();
        } catch (CompletionException e) {
            Status st = Status.fromThrowable(e.getCause() == null ? e : e.getCause());
            return st.getCode() + (st.getDescription() == null ? "" : ": " + st.getDescription());
        }
        if (result.getErrorCode() != 0) {
            return Status.fromCodeValue(result.getErrorCode()).getCode() + ": " + result.getErrorMessage();
        }
        FloatMatrix y;
        try {
            y = WireTensors.decode(result.getOutputs(), "worker outputs");
        } catch (IllegalArgumentException e) {
            return "malformed result: " + e.getMessage();
        }
        int expectedRows = 0;
        for (ExpertRows g : s.experts()) {
            expectedRows += g.slots().length;
        }
        if (y.rows() != expectedRows || y.cols() != h) {
            return "result has shape " + y.rows() + "x" + y.cols() + ", expected " + expectedRows + "x" + h;
        }
        stats.recordBatch(s.bytesOut(), result.getSerializedSize());
        int k = gate.k();
        float[] yd = y.data();
        int r = 0;
        for (ExpertRows g : s.experts()) {
            for (int slot : g.slots()) {
                int t = slot / k;
                float w = gate.scalesInput() ? 1f : gate.weights()[slot];
                int dst = t * h;
                int src = r * h;
                for (int c = 0; c < h; c++) {
                    out[dst + c] += w * yd[src + c];
                }
                r++;
            }
        }
        return null;
    }
}
