package dev.moecluster.coordinator;

import static java.util.Objects.requireNonNull;

import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import dev.moecluster.core.model.Architecture;
import dev.moecluster.core.model.ModelConfig;
import dev.moecluster.core.runner.DecoderConfig;
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
    /** The router's paged KV cache stores keys and values in bf16 (see the router's {@code --kv-cache-mb}). */
    static final DType ROUTER_KV_DTYPE = DType.BF16;

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
        JsonObject json = ModelConfig.readObject(file);
        String name = dir == null || dir.getFileName() == null ? "model" : dir.getFileName().toString();
        return ModelConfig.parse(json, name, file.toString());
    }

    /**
     * Plans the workers for {@code config}.
     *
     * @throws IllegalArgumentException when the model has no MoE layers, or one accelerator's usable
     *     memory cannot hold even one expert
     */
    public static CapacityPlan plan(ModelConfig config, CapacityRequest request) {
        return plan(config, request, RouterRequest.defaults());
    }

    /**
     * Plans the workers for {@code config}, and the routers for {@code routerRequest}'s concurrency and
     * context.
     *
     * @throws IllegalArgumentException when the model has no MoE layers, or one accelerator's usable
     *     memory cannot hold even one expert
     */
    public static CapacityPlan plan(ModelConfig config, CapacityRequest request, RouterRequest routerRequest) {
        requireNonNull(config, "config is null");
        requireNonNull(request, "request is null");
        requireNonNull(routerRequest, "routerRequest is null");
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
        List<String> notes = notes(config, request, model, expertDtype, denseDtype, byMemory, workers, slots);
        RouterPlan routers = planRouters(config, model, request, routerRequest, denseDtype, workers, perExpert, notes);
        return new CapacityPlan(model, request, shape, expertDtype, denseDtype, slots, workers, routers, notes);
    }

    private static RouterPlan planRouters(ModelConfig config, ModelFootprint model, CapacityRequest request,
            RouterRequest r, DType denseDtype, int workers, long bytesPerExpert, List<String> notes) {
        long dense = model.denseBytes(denseDtype);
        KvLayout kv = kvLayout(config, r.contextTokens(), notes);
        long perSequence = kv.bytesPerToken() * r.contextTokens();
        long memory = switch (r.device()) {
            case GPU -> request.usableBytes();
            case CPU -> r.hostBytes() == 0 ? 0 : (long) Math.floor(r.hostBytes() * (1 - request.reserveFraction()));
        };
        int routers;
        if (memory == 0) {
            routers = 1;
        } else {
            long sequences = memory < dense + perSequence ? 0 : (memory - dense) / Math.max(1, perSequence);
            routers = sequences == 0 ? 0 : Math.toIntExact(Math.ceilDiv(r.concurrency(), Math.min(sequences, r.concurrency())));
        }
        // Each of n tokens picks k of E experts: a given expert is missed by all with (1 - k/E)^n.
        double e = config.numExperts();
        double touched = e * (1 - Math.pow(1 - config.expertsPerToken() / e, r.concurrency()));
        long expertBytes = Math.round(model.moeLayers() * touched * bytesPerExpert);
        RouterPlan plan = new RouterPlan(r, ROUTER_KV_DTYPE, dense, kv.bytesPerToken(), kv.readBytesPerSequence(),
                memory, routers, touched, expertBytes, workers);
        routerNotes(plan, memory, notes);
        return plan;
    }

    private static void routerNotes(RouterPlan plan, long memory, List<String> notes) {
        RouterRequest r = plan.request();
        if (r.device() == RouterRequest.Device.GPU) {
            notes.add("GPU routers are sized for the router's cuda backend, which is not available yet (moe router"
                    + " --backend cuda fails at start): --router-on cpu sizes what runs today");
        }
        if (!plan.fits()) {
            notes.add("one router cannot hold the dense weights (" + MemorySize.format(plan.denseBytes())
                    + ") and one sequence's KV cache (" + MemorySize.format(plan.kvBytesPerSequence()) + ") in "
                    + MemorySize.format(memory) + ": give " + (r.device() == RouterRequest.Device.GPU
                            ? "a larger accelerator, --router-on cpu" : "more --router-host-memory")
                    + " or a shorter --context");
        }
        notes.add(String.format(Locale.ROOT,
                "decode speed from memory bandwidth alone (%.0f GB/s per accelerator%s): each step a router reads"
                        + " every dense weight once and its sequences' KV cache, and the workers read each expert"
                        + " some token chose once, experts chosen uniformly (E(1-(1-k/E)^n) of E per layer for n"
                        + " tokens); compute, network and gaps between steps come on top",
                r.acceleratorGbps(), r.device() == RouterRequest.Device.CPU
                        ? String.format(Locale.ROOT, ", %.0f GB/s per router host", r.hostGbps()) : ""));
    }

    /**
     * Keys and values per position, and what a decode step at full context reads of them.
     *
     * @param bytesPerToken every layer's keys and values for one position, as the router holds them
     * @param readBytesPerSequence what one step reads for a sequence at full context
     */
    private record KvLayout(long bytesPerToken, long readBytesPerSequence) {}

    private static KvLayout kvLayout(ModelConfig config, int context, List<String> notes) {
        long element = ROUTER_KV_DTYPE.byteSize();
        if (config.architecture() == Architecture.DEEPSEEK_V3) {
            // MLA caches one compressed latent and the shared rope key per position, not per-head K and V.
            JsonObject c = config.raw();
            long latent = intOr(c, "kv_lora_rank", 512) + intOr(c, "qk_rope_head_dim", 64);
            long perToken = config.numLayers() * latent * element;
            notes.add("KV cache sized as MLA's compressed latent (kv_lora_rank + qk_rope_head_dim per layer), as"
                    + " vLLM caches it; the router does not run MLA attention yet");
            return new KvLayout(perToken, perToken * context);
        }
        DecoderConfig d;
        try {
            d = DecoderConfig.from(config);
        } catch (IllegalArgumentException e) {
            // A setting the reference decoder refuses (a rope type, say) leaves the shape readable: size
            // it with every layer attending to every position rather than fail the whole plan.
            JsonObject c = config.raw();
            long heads = intOr(c, "num_attention_heads", 0);
            if (heads <= 0) {
                throw new IllegalArgumentException("cannot size the router's KV cache: " + e.getMessage(), e);
            }
            long headDim = intOr(c, "head_dim", config.architecture() == Architecture.LLAMA4 && !c.has("head_dim")
                    ? 128 : config.hiddenSize() / heads);
            long perToken = config.numLayers() * 2L * intOr(c, "num_key_value_heads", heads) * headDim * element;
            notes.add("KV cache sized with every layer attending to every position: " + e.getMessage());
            return new KvLayout(perToken, perToken * context);
        }
        long perLayer = 2L * d.kvDim() * element;
        long read = 0;
        int windowed = 0;
        int window = 0;
        for (DecoderConfig.LayerAttention layer : d.layers()) {
            // The most positions one query sees: a chunk ends at chunkSize, a sliding window at its width.
            long visible = context;
            if (layer.chunkSize() > 0) {
                visible = Math.min(visible, layer.chunkSize());
            }
            if (layer.slidingWindow() > 0) {
                visible = Math.min(visible, layer.slidingWindow());
            }
            if (layer.chunkSize() > 0 || layer.slidingWindow() > 0) {
                windowed++;
                window = layer.chunkSize() > 0 ? layer.chunkSize() : layer.slidingWindow();
            }
            read += perLayer * visible;
        }
        notes.add(String.format(Locale.ROOT,
                "KV cache per token: %d layers x %d KV heads x head_dim %d x 2 (K and V) x %d bytes (%s),"
                        + " every position of every layer held, as the router's paged cache holds it",
                d.numLayers(), d.numKvHeads(), d.headDim(), element, CapacityPlan.dtypeName(ROUTER_KV_DTYPE)));
        if (windowed > 0) {
            notes.add(String.format(Locale.ROOT,
                    "%d of %d layers attend within %s of %d positions: they hold every position but a step reads"
                            + " at most %d of them%s", windowed, d.numLayers(),
                    config.architecture() == Architecture.LLAMA4 ? "chunks" : "a sliding window", window, window,
                    context > window ? " (a cache that dropped positions outside the window would need less memory)"
                            : ""));
        }
        return new KvLayout(perLayer * d.numLayers(), read);
    }

    private static long intOr(JsonObject c, String key, long def) {
        JsonElement e = c.get(key);
        return e == null || e.isJsonNull() ? def : e.getAsLong();
    }

    private static List<String> notes(ModelConfig config, CapacityRequest request, ModelFootprint model,
            DType expertDtype, DType denseDtype, long byMemory, int workers, long slots) {
        List<String> notes = new ArrayList<>();
        JsonElement comment = config.raw().get("_comment");
        if (comment != null && comment.isJsonPrimitive()) {
            notes.add(comment.getAsString());
        }
        notes.add(String.format(Locale.ROOT,
                "%.0f%% of each accelerator (%s) is kept back for activations, batch buffers and the runtime;"
                        + " GPU routers, and router hosts of a given memory, keep back the same share",
                request.reserveFraction() * 100, MemorySize.format(request.acceleratorBytes() - request.usableBytes())));
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
        notes.add("every router holds the dense part at the checkpoint's dtype ("
                + CapacityPlan.dtypeName(denseDtype) + ")"
                + (model.dense().sharedExperts() > 0 ? ", shared experts included" : ""));
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
