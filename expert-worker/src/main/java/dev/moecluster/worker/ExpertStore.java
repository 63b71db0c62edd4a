package dev.moecluster.worker;

import dev.moecluster.core.model.Checkpoint;
import dev.moecluster.core.model.CheckpointLayout;
import dev.moecluster.core.model.ModelConfig;
import dev.moecluster.core.moe.ExpertWeights;
import dev.moecluster.core.placement.ExpertAssignment;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.nio.file.Path;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.logging.Logger;

/**
 * The experts this worker holds. Opens the checkpoint memory-mapped and touches only the tensors of
 * its experts, so a worker reads a fraction of a large model; each expert is handed to the backend's
 * {@link ExpertBackend#load} (pages in, or uploads to the device) before it is served. Experts can be
 * loaded and unloaded while serving (placement changes); an unloaded expert is given back to the
 * backend and its memory released only after a delay, so a round still computing on it finishes.
 */
public final class ExpertStore implements AutoCloseable {
    private static final Logger LOG = Logger.getLogger(ExpertStore.class.getName());
    private static final long RELEASE_DELAY_SECONDS = 30;

    /** One loaded expert and the memory it owns (copies, for layouts that need them). */
    private record Loaded(ExpertWeights weights, Arena arena) {}

    private final ModelConfig config;
    private final Checkpoint checkpoint;
    private final CheckpointLayout layout;
    private final ExpertBackend backend;
    private final Map<Long, Loaded> experts = new ConcurrentHashMap<>();
    private final ScheduledExecutorService releaser = Executors.newSingleThreadScheduledExecutor(
            r -> Thread.ofPlatform().name("moe-expert-release").daemon().unstarted(r));

    private ExpertStore(ModelConfig config, Checkpoint checkpoint, ExpertBackend backend) {
        this.config = config;
        this.checkpoint = checkpoint;
        this.backend = backend;
        this.layout = new CheckpointLayout(config);
    }

    /** Opens the model and loads the assigned experts into {@code backend}. */
    public static ExpertStore load(Path modelDir, ModelConfig config, ExpertAssignment assignment, ExpertBackend backend)
            throws IOException {
        Checkpoint checkpoint = Checkpoint.open(modelDir);
        ExpertStore store = new ExpertStore(config, checkpoint, backend);
        try {
            store.reconcile(assignment.byLayer());
        } catch (RuntimeException e) {
            store.close();
            throw new IOException("cannot load experts from " + modelDir + ": " + e.getMessage(), e);
        }
        LOG.info(() -> "loaded " + assignment.expertCount() + " experts (" + store.byteSize() / (1024 * 1024) + " MiB) from " + modelDir);
        return store;
    }

    private static long key(int layer, int expert) {
        return (long) layer << 32 | (expert & 0xffffffffL);
    }

    /**
     * Loads what {@code target} has and this store lacks, unloads what it no longer has; returns
     * the number of experts loaded and unloaded.
     */
    public synchronized int reconcile(Map<Integer, Set<Integer>> target) {
        int changes = 0;
        for (Map.Entry<Integer, Set<Integer>> e : target.entrySet()) {
            for (int expert : e.getValue()) {
                long k = key(e.getKey(), expert);
                if (!experts.containsKey(k)) {
                    Arena arena = Arena.ofShared();
                    ExpertWeights w;
                    try {
                        w = layout.expert(checkpoint, arena, e.getKey(), expert);
                        backend.load(w);
                    } catch (RuntimeException failed) {
                        arena.close();
                        // the backend knows the weights, not which expert they are: name it for the operator
                        throw new IllegalStateException("cannot load expert " + expert + " of layer " + e.getKey() + ": "
                                + failed.getMessage(), failed);
                    }
                    experts.put(k, new Loaded(w, arena));
                    changes++;
                }
            }
        }
        for (Long k : Set.copyOf(experts.keySet())) {
            int layer = (int) (k >>> 32);
            int expert = (int) (long) k;
            if (!target.getOrDefault(layer, Set.of()).contains(expert)) {
                Loaded gone = experts.remove(k);
                releaser.schedule(() -> release(gone), RELEASE_DELAY_SECONDS, TimeUnit.SECONDS);
                changes++;
            }
        }
        return changes;
    }

    private void release(Loaded gone) {
        try {
            backend.unload(gone.weights());
        } finally {
            gone.arena().close();
        }
    }

    /**
     * One expert of the model read afresh into {@code arena}, not held by this store and not loaded
     * into the backend: the worker's real expert shape, for calibrating the backend.
     */
    public ExpertWeights sample(Arena arena) {
        return layout.expert(checkpoint, arena, config.moeLayerList().getFirst(), 0);
    }

    public ModelConfig config() {
        return config;
    }

    /** The experts held now. */
    public ExpertAssignment assignment() {
        Map<Integer, Set<Integer>> held = new TreeMap<>();
        for (Long k : experts.keySet()) {
            held.computeIfAbsent((int) (k >>> 32), l -> new TreeSet<>()).add((int) (long) k);
        }
        return new ExpertAssignment(held);
    }

    /** The expert's weights, or null if this worker does not hold it. */
    public ExpertWeights get(int layer, int expert) {
        Loaded l = experts.get(key(layer, expert));
        return l == null ? null : l.weights();
    }

    /** Bytes of expert weights held. */
    public long byteSize() {
        return experts.values().stream().mapToLong(l -> l.weights().byteSize()).sum();
    }

    @Override
    public void close() {
        for (Runnable pending : releaser.shutdownNow()) {
            pending.run();
        }
        for (Loaded l : experts.values()) {
            release(l);
        }
        experts.clear();
        checkpoint.close();
    }
}
