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
import java.util.concurrent.ConcurrentHashMap;
import java.util.logging.Logger;

/**
 * The experts this worker holds. Opens the checkpoint memory-mapped and touches only the tensors of
 * its experts, so a worker reads a fraction of a large model; each expert is run once at load so its
 * pages are resident before the worker reports ready.
 */
public final class ExpertStore implements AutoCloseable {
    private static final Logger LOG = Logger.getLogger(ExpertStore.class.getName());

    private final ModelConfig config;
    private final Checkpoint checkpoint;
    private final Arena arena = Arena.ofShared();
    private final Map<Long, ExpertWeights> experts = new ConcurrentHashMap<>();
    private final ExpertAssignment assignment;

    private ExpertStore(ModelConfig config, Checkpoint checkpoint, ExpertAssignment assignment) {
        this.config = config;
        this.checkpoint = checkpoint;
        this.assignment = assignment;
    }

    /** Opens the model and loads the assigned experts. */
    public static ExpertStore load(Path modelDir, ModelConfig config, ExpertAssignment assignment) throws IOException {
        Checkpoint checkpoint = Checkpoint.open(modelDir);
        ExpertStore store = new ExpertStore(config, checkpoint, assignment);
        try {
            CheckpointLayout layout = new CheckpointLayout(config);
            for (Map.Entry<Integer, Set<Integer>> e : assignment.byLayer().entrySet()) {
                for (int expert : e.getValue()) {
                    ExpertWeights w = layout.expert(checkpoint, store.arena, e.getKey(), expert);
                    // One row through the expert pages its weights in now rather than on the first request.
                    w.forward(new float[w.hiddenSize()], 1, new float[w.hiddenSize()]);
                    store.experts.put(key(e.getKey(), expert), w);
                }
            }
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

    public ModelConfig config() {
        return config;
    }

    public ExpertAssignment assignment() {
        return assignment;
    }

    /** The expert's weights, or null if this worker does not hold it. */
    public ExpertWeights get(int layer, int expert) {
        return experts.get(key(layer, expert));
    }

    /** Bytes of expert weights held. */
    public long byteSize() {
        return experts.values().stream().mapToLong(ExpertWeights::byteSize).sum();
    }

    @Override
    public void close() {
        experts.clear();
        checkpoint.close();
        arena.close();
    }
}
