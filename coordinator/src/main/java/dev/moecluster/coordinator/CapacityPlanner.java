package dev.moecluster.coordinator;

import static java.util.Objects.requireNonNull;

import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParseException;
import com.google.gson.JsonParser;
import dev.moecluster.core.model.Architecture;
import dev.moecluster.core.model.ModelConfig;
import dev.moecluster.core.tensor.DType;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;

/**
 * Sizes an expert-worker fleet before any hardware is bought: from a model's config and one
 * accelerator's memory it works out how many workers hold every routed expert (with the minimum
 * replicas, each on a distinct worker), how full each is, and how many redundant copies of hot
 * experts the leftover memory takes. Pure arithmetic on the config; no weights are read.
 */
public final class CapacityPlanner {
    private CapacityPlanner() {}

    /**
     * Reads a Hugging Face {@code config.json}, given either the file or the model directory holding it.
     *
     * @throws IOException when there is no such file or directory, or no {@code config.json} in it
     * @throws IllegalArgumentException when the file is not a JSON object, lacks a field, or names an
     *     architecture the cluster does not serve
     */
    public static ModelConfig readConfig(Path dirOrFile) throws IOException {
        requireNonNull(dirOrFile, "dirOrFile is null");
        if (!Files.exists(dirOrFile)) {
            throw new IOException("no model config at " + dirOrFile
                    + " (give a Hugging Face model directory or its config.json)");
        }
        Path dir = Files.isDirectory(dirOrFile) ? dirOrFile : dirOrFile.toAbsolutePath().getParent();
        Path file = Files.isDirectory(dirOrFile) ? dirOrFile.resolve("config.json") : dirOrFile;
        if (!Files.isRegularFile(file)) {
            throw new IOException("no config.json in " + dirOrFile + " (expected a Hugging Face model directory)");
        }
        JsonObject json;
        try {
            JsonElement e = JsonParser.parseString(Files.readString(file));
            if (!e.isJsonObject()) {
                throw new IllegalArgumentException(file + " is not a JSON object");
            }
            json = e.getAsJsonObject();
        } catch (JsonParseException e) {
            throw new IllegalArgumentException(file + " is not valid JSON: " + e.getMessage(), e);
        }
        String name = dir == null || dir.getFileName() == null ? "model" : dir.getFileName().toString();
        return ModelConfig.parse(json, name);
    }

    /**
     * Plans the workers for {@code config}.
     *
     * @throws IllegalArgumentException when the model has no MoE layers, or one accelerator's usable
     *     memory cannot hold even one expert
     */
    public static CapacityPlan plan(ModelConfig config, CapacityRequest request) {
        requireNonNull(config, "config is null");
        requireNonNull(request, "request is null");
        ModelFootprint model = ModelFootprint.of(config);
        if (model.moeLayers() == 0) {
            throw new IllegalArgumentException(config.name() + " has no MoE layers: there are no experts to place on workers");
        }
        DType expertDtype = request.expertDtype().orElse(config.expertDtype());
        DType denseDtype = config.dtype();
        long perExpert = model.bytesPerExpert(expertDtype);
        long usable = request.usableBytes();
        if (usable < perExpert) {
            long needed = (long) Math.ceil(perExpert / (1 - request.reserveFraction()));
            throw new IllegalArgumentException(String.format(Locale.ROOT,
                    "one expert of %s takes %s at %s, but a %s accelerator leaves only %s after the %.0f%% reserve:"
                            + " give an accelerator memory of at least %s, a smaller reserve, or a smaller dtype",
                    config.name(), MemorySize.format(perExpert), CapacityPlan.dtypeName(expertDtype),
                    MemorySize.format(request.acceleratorBytes()), MemorySize.format(usable),
                    request.reserveFraction() * 100, MemorySize.format(needed)));
        }
        long slots = usable / perExpert;
        long copies = model.totalExperts() * request.minReplicas();
        long byMemory = Math.ceilDiv(copies, slots);
        int workers = Math.toIntExact(Math.max(request.minReplicas(), byMemory));
        ModelShape shape = new ModelShape(config.moeLayerList(), config.numExperts(), perExpert);
        return new CapacityPlan(model, request, shape, expertDtype, denseDtype, slots, workers,
                notes(config, request, model, expertDtype, denseDtype, byMemory, workers, usable, slots));
    }

    private static List<String> notes(ModelConfig config, CapacityRequest request, ModelFootprint model,
            DType expertDtype, DType denseDtype, long byMemory, int workers, long usable, long slots) {
        List<String> notes = new ArrayList<>();
        JsonElement comment = config.raw().get("_comment");
        if (comment != null && comment.isJsonPrimitive()) {
            notes.add(comment.getAsString());
        }
        notes.add(String.format(Locale.ROOT,
                "%.0f%% of each accelerator (%s) is kept back for activations, batch buffers and the runtime;"
                        + " the router's KV cache is not part of this plan",
                request.reserveFraction() * 100, MemorySize.format(request.acceleratorBytes() - usable)));
        if (workers > byMemory) {
            notes.add("the worker count is set by the " + request.minReplicas()
                    + " replicas of every expert (each copy on a distinct worker), not by memory");
        }
        long redundant = workers * slots - model.totalExperts() * request.minReplicas();
        long wanted = Math.ceilDiv(model.totalExperts(), 10);
        if (redundant < wanted) {
            // EPLB-style balancing needs spare slots for hot-expert replicas; say what buys 10%.
            notes.add(String.format(Locale.ROOT,
                    "little room for hot-expert replicas (%d spare slots): each extra worker adds %d, so %d more"
                            + " worker(s) give at least %d (10%% of the experts)",
                    redundant, slots, Math.ceilDiv(wanted - redundant, slots), wanted));
        }
        if (expertDtype != config.expertDtype()) {
            notes.add("experts sized at " + CapacityPlan.dtypeName(expertDtype)
                    + (expertDtype == DType.FP8_E4M3 ? " (e4m3 with one f32 scale per weight row)" : "")
                    + " while the checkpoint's experts are " + CapacityPlan.dtypeName(config.expertDtype())
                    + ": workers load experts in the checkpoint's dtype, so this is a what-if for a converted checkpoint");
        }
        notes.add("the dense part stays on the router at the checkpoint's dtype ("
                + CapacityPlan.dtypeName(denseDtype) + ")"
                + (model.dense().sharedExperts() > 0 ? ", shared experts included" : ""));
        if (model.denseBytes(denseDtype) > usable) {
            notes.add("the dense part (" + MemorySize.format(model.denseBytes(denseDtype))
                    + ") does not fit one accelerator's usable memory: the router needs a larger device or host");
        }
        if (config.weightPrefix().startsWith("language_model.")) {
            notes.add("multimodal checkpoint: the vision encoder and projector are not counted");
        }
        if (config.architecture() == Architecture.DEEPSEEK_V3) {
            JsonElement mtp = config.raw().get("num_nextn_predict_layers");
            if (mtp != null && !mtp.isJsonNull() && mtp.getAsInt() > 0) {
                notes.add(mtp.getAsInt() + " multi-token-prediction layer(s) not counted (not used for serving)");
            }
        }
        return notes;
    }
}
