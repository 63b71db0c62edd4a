package dev.moecluster.core.placement;

import static java.util.Objects.requireNonNull;

import com.google.gson.Gson;
import com.google.gson.GsonBuilder;
import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import dev.moecluster.core.model.ModelConfig;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.TreeSet;

/**
 * Which workers hold which experts: for every MoE layer and expert, the indices into
 * {@link #workers()} of its replicas, first the primary. Versioned by {@link #epoch()} so a router can
 * switch to a new placement atomically.
 *
 * @param workers worker addresses ({@code host:port}), in a fixed order
 * @param layers layer index → expert index → worker indices
 */
public record ExpertPlacement(long epoch, List<String> workers, Map<Integer, int[][]> layers) {
    private static final Gson GSON = new GsonBuilder().setPrettyPrinting().create();

    public ExpertPlacement {
        workers = List.copyOf(workers);
        Map<Integer, int[][]> copy = new TreeMap<>();
        for (Map.Entry<Integer, int[][]> entry : layers.entrySet()) {
            int[][] experts = entry.getValue();
            int[][] c = new int[experts.length][];
            for (int e = 0; e < experts.length; e++) {
                c[e] = experts[e].clone();
                for (int w : c[e]) {
                    if (w < 0 || w >= workers.size()) {
                        throw new IllegalArgumentException("expert " + e + " of layer " + entry.getKey()
                                + " names worker index " + w + " but there are " + workers.size() + " workers");
                    }
                }
            }
            copy.put(entry.getKey(), c);
        }
        layers = java.util.Collections.unmodifiableMap(copy);
    }

    /** No workers and no experts placed, epoch 0: what a router starts from before a coordinator answers. */
    public static ExpertPlacement none() {
        return new ExpertPlacement(0, List.of(), Map.of());
    }

    /**
     * Places experts round-robin over the workers, each on {@code replicas} distinct workers: expert
     * {@code e} of the {@code i}-th MoE layer goes to workers {@code (i·E + e + r) mod N} for
     * {@code r < replicas}.
     */
    public static ExpertPlacement roundRobin(List<String> workers, List<Integer> moeLayers, int numExperts, int replicas) {
        requireNonNull(workers, "workers is null");
        if (workers.isEmpty()) {
            throw new IllegalArgumentException("at least one worker is needed");
        }
        if (replicas < 1 || replicas > workers.size()) {
            throw new IllegalArgumentException("replicas must be between 1 and the number of workers (" + workers.size()
                    + "), got " + replicas);
        }
        Map<Integer, int[][]> layers = new TreeMap<>();
        int n = workers.size();
        for (int i = 0; i < moeLayers.size(); i++) {
            int[][] experts = new int[numExperts][replicas];
            for (int e = 0; e < numExperts; e++) {
                for (int r = 0; r < replicas; r++) {
                    experts[e][r] = (i * numExperts + e + r) % n;
                }
            }
            layers.put(moeLayers.get(i), experts);
        }
        return new ExpertPlacement(1, workers, layers);
    }

    public static ExpertPlacement roundRobin(List<String> workers, ModelConfig config, int replicas) {
        return roundRobin(workers, config.moeLayerList(), config.numExperts(), replicas);
    }

    /** Worker indices holding an expert, primary first; empty if the expert is not placed. */
    public int[] replicas(int layer, int expert) {
        int[][] experts = layers.get(layer);
        if (experts == null || expert < 0 || expert >= experts.length) {
            return new int[0];
        }
        return experts[expert].clone();
    }

    /** The experts a worker holds, by layer. */
    public Map<Integer, Set<Integer>> heldBy(int worker) {
        Map<Integer, Set<Integer>> held = new TreeMap<>();
        layers.forEach((l, experts) -> {
            for (int e = 0; e < experts.length; e++) {
                for (int w : experts[e]) {
                    if (w == worker) {
                        held.computeIfAbsent(l, x -> new TreeSet<>()).add(e);
                    }
                }
            }
        });
        return held;
    }

    public int indexOf(String worker) {
        int i = workers.indexOf(worker);
        if (i < 0) {
            throw new IllegalArgumentException("worker " + worker + " is not in the placement (workers: " + workers + ")");
        }
        return i;
    }

    /**
     * The fewest replicas any expert of {@code config} has on workers outside {@code excluded}; 0
     * when an expert is not placed at all.
     */
    public int minReplicas(ModelConfig config, Set<String> excluded) {
        int min = Integer.MAX_VALUE;
        for (int layer : config.moeLayerList()) {
            for (int e = 0; e < config.numExperts(); e++) {
                int live = 0;
                for (int w : replicas(layer, e)) {
                    if (!excluded.contains(workers.get(w))) {
                        live++;
                    }
                }
                min = Math.min(min, live);
            }
        }
        return min == Integer.MAX_VALUE ? 0 : min;
    }

    /** Fails unless every expert of every MoE layer of {@code config} has at least one replica. */
    public void requireCovers(ModelConfig config) {
        for (int layer : config.moeLayerList()) {
            for (int e = 0; e < config.numExperts(); e++) {
                if (replicas(layer, e).length == 0) {
                    throw new IllegalArgumentException("placement has no worker for expert " + e + " of layer " + layer);
                }
            }
        }
    }

    public String toJson() {
        JsonObject root = new JsonObject();
        root.addProperty("epoch", epoch);
        JsonArray w = new JsonArray();
        workers.forEach(w::add);
        root.add("workers", w);
        JsonObject ls = new JsonObject();
        layers.forEach((l, experts) -> ls.add(String.valueOf(l), GSON.toJsonTree(experts)));
        root.add("layers", ls);
        return GSON.toJson(root);
    }

    public static ExpertPlacement fromJson(String json) {
        JsonObject root = JsonParser.parseString(json).getAsJsonObject();
        List<String> workers = new ArrayList<>();
        root.getAsJsonArray("workers").forEach(e -> workers.add(e.getAsString()));
        Map<Integer, int[][]> layers = new TreeMap<>();
        for (Map.Entry<String, JsonElement> e : root.getAsJsonObject("layers").entrySet()) {
            layers.put(Integer.parseInt(e.getKey()), GSON.fromJson(e.getValue(), int[][].class));
        }
        return new ExpertPlacement(root.has("epoch") ? root.get("epoch").getAsLong() : 1, workers, layers);
    }

    public static ExpertPlacement read(Path file) throws IOException {
        try {
            return fromJson(Files.readString(file));
        } catch (RuntimeException e) {
            throw new IOException("cannot read placement file " + file + ": " + e.getMessage(), e);
        }
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof ExpertPlacement p && p.epoch == epoch && p.workers.equals(workers)
                && p.layers.keySet().equals(layers.keySet())
                && layers.keySet().stream().allMatch(l -> Arrays.deepEquals(p.layers.get(l), layers.get(l)));
    }

    @Override
    public int hashCode() {
        return Long.hashCode(epoch) * 31 + workers.hashCode();
    }
}
