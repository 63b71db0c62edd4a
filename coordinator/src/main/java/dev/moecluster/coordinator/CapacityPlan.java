package dev.moecluster.coordinator;

import static java.util.Objects.requireNonNull;

import com.google.gson.Gson;
import com.google.gson.GsonBuilder;
import com.google.gson.JsonArray;
import com.google.gson.JsonObject;
import dev.moecluster.core.tensor.DType;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;

/**
 * How many expert workers a model needs at a given accelerator memory, what each holds, and the
 * memory left over for redundant copies of hot experts. Made by {@link CapacityPlanner}; the
 * {@link #shape()} and {@link #workerCapacities()} are what the placement planner would be given.
 *
 * @param model the model's parameters
 * @param request what was asked for
 * @param shape MoE layers, experts per layer and bytes per expert at {@code expertDtype}
 * @param expertDtype the dtype experts are held in on workers
 * @param denseDtype the dtype of the dense part on the router (the checkpoint's)
 * @param slotsPerWorker experts one worker's usable memory holds
 * @param workers workers needed: enough slots for every copy, and at least {@code minReplicas}
 * @param routers the routers for the requested concurrency and context, and what sets the decode speed
 * @param notes assumptions and caveats, for people
 */
public record CapacityPlan(
        ModelFootprint model,
        CapacityRequest request,
        ModelShape shape,
        DType expertDtype,
        DType denseDtype,
        long slotsPerWorker,
        int workers,
        RouterPlan routers,
        List<String> notes) {
    private static final Gson GSON = new GsonBuilder().setPrettyPrinting().disableHtmlEscaping().create();

    public CapacityPlan {
        requireNonNull(model, "model is null");
        requireNonNull(request, "request is null");
        requireNonNull(shape, "shape is null");
        requireNonNull(expertDtype, "expertDtype is null");
        requireNonNull(denseDtype, "denseDtype is null");
        requireNonNull(routers, "routers is null");
        notes = List.copyOf(notes);
        if (workers < request.minReplicas() || (long) workers * slotsPerWorker < expertCopies(shape, request)) {
            throw new IllegalArgumentException(workers + " workers of " + slotsPerWorker + " slots cannot hold "
                    + expertCopies(shape, request) + " expert copies on " + request.minReplicas() + " distinct workers each");
        }
    }

    private static long expertCopies(ModelShape shape, CapacityRequest request) {
        return (long) shape.totalExperts() * request.minReplicas();
    }

    public long bytesPerExpert() {
        return shape.bytesPerExpert();
    }

    /** Routed experts over all MoE layers, one copy each. */
    public long totalExperts() {
        return shape.totalExperts();
    }

    /** Expert copies the minimum replica count asks for. */
    public long expertCopies() {
        return expertCopies(shape, request);
    }

    /** Bytes of every routed expert, one copy each. */
    public long routedExpertBytes() {
        return totalExperts() * bytesPerExpert();
    }

    /** Bytes of the dense part the router holds. */
    public long denseBytes() {
        return model.denseBytes(denseDtype);
    }

    /** Accelerators the deployment takes: the workers', and the routers' when they run on GPUs. */
    public int accelerators() {
        return workers + routers.accelerators();
    }

    /** Experts on the fullest worker when the copies are spread evenly. */
    public long maxExpertsPerWorker() {
        return Math.ceilDiv(expertCopies(), workers);
    }

    /** Experts on the emptiest worker when the copies are spread evenly. */
    public long minExpertsPerWorker() {
        return expertCopies() / workers;
    }

    /** Expert bytes on the fullest worker. */
    public long maxExpertBytesPerWorker() {
        return maxExpertsPerWorker() * bytesPerExpert();
    }

    /** Usable memory left on the fullest worker after its experts (the reserve is extra). */
    public long minFreeBytesPerWorker() {
        return request.usableBytes() - maxExpertBytesPerWorker();
    }

    /** Usable memory left on the emptiest worker after its experts. */
    public long maxFreeBytesPerWorker() {
        return request.usableBytes() - minExpertsPerWorker() * bytesPerExpert();
    }

    /** Redundant expert copies (hot-expert replicas beyond the minimum) the workers' free slots hold. */
    public long redundantCopies() {
        return workers * slotsPerWorker - expertCopies();
    }

    /** The workers as the placement planner sees them: {@code worker-0 … worker-(n-1)}, each with the usable memory. */
    public List<WorkerCapacity> workerCapacities() {
        List<WorkerCapacity> list = new ArrayList<>(workers);
        for (int w = 0; w < workers; w++) {
            list.add(WorkerCapacity.of("worker-" + w, request.usableBytes()));
        }
        return List.copyOf(list);
    }

    /** A dtype as written on the command line: {@code f32}, {@code bf16}, {@code f16}, {@code fp8}. */
    public static String dtypeName(DType dtype) {
        return dtype == DType.FP8_E4M3 ? "fp8" : dtype.name().toLowerCase(Locale.ROOT);
    }

    /** The plan as JSON: sizes in bytes and parameter counts as integers, for scripts. */
    public String toJson() {
        JsonObject root = new JsonObject();
        JsonObject m = new JsonObject();
        m.addProperty("name", model.model());
        m.addProperty("architecture", model.architecture().cliName());
        m.addProperty("layers", model.numLayers());
        m.addProperty("moe_layers", model.moeLayers());
        m.addProperty("hidden_size", model.hiddenSize());
        m.addProperty("experts_per_layer", model.expertsPerLayer());
        m.addProperty("experts_per_token", model.expertsPerToken());
        m.addProperty("expert_intermediate_size", model.expertIntermediateSize());
        root.add("model", m);

        JsonObject p = new JsonObject();
        p.addProperty("total", model.totalParams());
        p.addProperty("active", model.activeParams());
        p.addProperty("per_expert", model.paramsPerExpert());
        p.addProperty("routed_experts", model.routedExpertParams());
        p.addProperty("routed_experts_active", model.activeExpertParams());
        ModelFootprint.DenseParameters d = model.dense();
        JsonObject dense = new JsonObject();
        dense.addProperty("total", d.total());
        dense.addProperty("embeddings", d.embeddings());
        dense.addProperty("lm_head", d.lmHead());
        dense.addProperty("attention", d.attention());
        dense.addProperty("dense_ffn", d.denseFfn());
        dense.addProperty("shared_experts", d.sharedExperts());
        dense.addProperty("routers", d.routers());
        dense.addProperty("norms", d.norms());
        p.add("dense", dense);
        root.add("parameters", p);

        JsonObject mem = new JsonObject();
        mem.addProperty("expert_dtype", dtypeName(expertDtype));
        mem.addProperty("dense_dtype", dtypeName(denseDtype));
        mem.addProperty("bytes_per_expert", bytesPerExpert());
        mem.addProperty("routed_experts_bytes", routedExpertBytes());
        mem.addProperty("dense_bytes", denseBytes());
        root.add("memory", mem);

        JsonObject w = new JsonObject();
        w.addProperty("accelerator_bytes", request.acceleratorBytes());
        w.addProperty("reserve_fraction", request.reserveFraction());
        w.addProperty("usable_bytes_per_worker", request.usableBytes());
        w.addProperty("expert_slots_per_worker", slotsPerWorker);
        w.addProperty("min_replicas", request.minReplicas());
        w.addProperty("expert_copies", expertCopies());
        w.addProperty("count", workers);
        w.addProperty("experts_per_worker_min", minExpertsPerWorker());
        w.addProperty("experts_per_worker_max", maxExpertsPerWorker());
        w.addProperty("expert_bytes_per_worker_max", maxExpertBytesPerWorker());
        w.addProperty("free_bytes_per_worker_min", minFreeBytesPerWorker());
        w.addProperty("free_bytes_per_worker_max", maxFreeBytesPerWorker());
        w.addProperty("redundant_copies_that_fit", redundantCopies());
        root.add("workers", w);

        RouterRequest rr = routers.request();
        JsonObject r = new JsonObject();
        r.addProperty("device", rr.device().cliName());
        r.addProperty("concurrency", rr.concurrency());
        r.addProperty("context_tokens", rr.contextTokens());
        r.addProperty("kv_dtype", dtypeName(routers.kvDtype()));
        r.addProperty("dense_bytes", routers.denseBytes());
        r.addProperty("kv_bytes_per_token", routers.kvBytesPerToken());
        r.addProperty("kv_bytes_per_sequence", routers.kvBytesPerSequence());
        r.addProperty("kv_bytes_all_sequences", routers.kvBytes());
        r.addProperty("memory_bytes_per_router", routers.memoryBytesPerRouter());
        r.addProperty("count", routers.routers());
        r.addProperty("sequences_per_router_max", routers.sequencesPerRouter());
        r.addProperty("bytes_per_router_max", routers.bytesPerRouter());
        root.add("routers", r);

        JsonObject speed = new JsonObject();
        speed.addProperty("accelerator_gbps", rr.acceleratorGbps());
        speed.addProperty("router_host_gbps", rr.hostGbps());
        speed.addProperty("router_bytes_per_step", routers.routerStepBytes());
        speed.addProperty("router_seconds_per_step", routers.routerStepSeconds());
        speed.addProperty("experts_touched_per_layer", routers.expertsTouchedPerLayer());
        speed.addProperty("worker_bytes_per_step", routers.workerStepBytes());
        speed.addProperty("worker_seconds_per_step", routers.workerStepSeconds());
        speed.addProperty("set_by", routers.routersSetTheSpeed() ? "routers" : "workers");
        speed.addProperty("steps_per_second", routers.stepsPerSecond());
        root.add("decode", speed);
        root.addProperty("accelerators", accelerators());

        JsonArray n = new JsonArray();
        notes.forEach(n::add);
        root.add("notes", n);
        return GSON.toJson(root);
    }
}
