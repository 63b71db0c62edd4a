package dev.moecluster.cli;

import dev.moecluster.coordinator.CapacityPlan;
import dev.moecluster.coordinator.CapacityPlanner;
import dev.moecluster.coordinator.CapacityRequest;
import dev.moecluster.coordinator.MemorySize;
import dev.moecluster.coordinator.ModelFootprint;
import dev.moecluster.coordinator.RouterPlan;
import dev.moecluster.coordinator.RouterRequest;
import dev.moecluster.core.model.ModelConfig;
import dev.moecluster.core.tensor.DType;
import java.io.PrintWriter;
import java.nio.file.Path;
import java.util.Locale;
import java.util.Optional;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.ITypeConverter;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;
import picocli.CommandLine.TypeConversionException;

/** {@code moe plan}: the workers and routers a model needs at a given accelerator memory and load. */
@Command(name = "plan", mixinStandardHelpOptions = true,
        description = "Size a whole deployment for a model from its config.json: parameters (experts vs dense), bytes per"
                + " expert, workers needed at the given accelerator memory, experts and memory per worker, the headroom"
                + " for redundant copies of hot experts; the routers for --concurrency sequences of --context tokens"
                + " (dense weights and KV cache, on CPU hosts or GPUs); the accelerators in all; and whether the routers"
                + " or the workers set the decode speed. Reads no weights.")
final class PlanCommand implements Callable<Integer> {
    @Spec
    CommandSpec spec;

    @Option(names = "--config", required = true, paramLabel = "DIR|FILE",
            description = "Hugging Face model directory or its config.json.")
    Path config;

    @Option(names = "--accelerator-memory", required = true, paramLabel = "SIZE", converter = MemorySizeConverter.class,
            description = "Memory of one worker's accelerator: binary units (80GiB, 141GiB, 512MiB) or decimal (80GB).")
    MemorySize acceleratorMemory;

    @Option(names = "--replicas", defaultValue = "1", paramLabel = "R",
            description = "Minimum copies of every expert, each on a distinct worker (default: ${DEFAULT-VALUE}).")
    int replicas;

    @Option(names = "--dtype", paramLabel = "DTYPE",
            description = "dtype the experts are held in: bf16, fp8, f16 or f32 (default: the checkpoint's torch_dtype).")
    String dtype;

    @Option(names = "--reserve-fraction", defaultValue = "0.1", paramLabel = "FRACTION",
            description = "Share of each accelerator kept for activations, buffers and the runtime (default: ${DEFAULT-VALUE}).")
    double reserveFraction;

    @Option(names = "--concurrency", defaultValue = "" + RouterRequest.DEFAULT_CONCURRENCY, paramLabel = "N",
            description = "Sequences decoded at once over all routers, as the router's --max-sequences (default: ${DEFAULT-VALUE}).")
    int concurrency;

    @Option(names = "--context", defaultValue = "" + RouterRequest.DEFAULT_CONTEXT_TOKENS, paramLabel = "TOKENS",
            description = "Tokens one sequence holds at its longest, prompt and generated: sizes its KV cache (default: ${DEFAULT-VALUE}).")
    int context;

    @Option(names = "--router-on", defaultValue = "cpu", paramLabel = "cpu|gpu",
            description = "Where routers run: cpu (a CPU host each, what the router runs on today) or gpu (one accelerator"
                    + " of --accelerator-memory each, for the router's cuda backend) (default: ${DEFAULT-VALUE}).")
    String routerOn;

    @Option(names = "--router-host-memory", paramLabel = "SIZE", converter = MemorySizeConverter.class,
            description = "Memory of one CPU router host; routers are added until the concurrency fits (default: one host,"
                    + " and the plan says how much memory it needs).")
    MemorySize routerHostMemory;

    @Option(names = "--accelerator-bandwidth", defaultValue = "" + RouterRequest.DEFAULT_ACCELERATOR_GBPS, paramLabel = "GB/s",
            description = "Memory bandwidth of one accelerator for the decode-speed estimate (default: ${DEFAULT-VALUE}, H100 SXM).")
    double acceleratorBandwidth;

    @Option(names = "--host-bandwidth", defaultValue = "" + RouterRequest.DEFAULT_HOST_GBPS, paramLabel = "GB/s",
            description = "Memory bandwidth of one CPU router host for the decode-speed estimate (default: ${DEFAULT-VALUE}).")
    double hostBandwidth;

    @Option(names = "--json", description = "Print the plan as JSON (bytes and parameter counts as integers).")
    boolean json;

    @Override
    public Integer call() throws Exception {
        ModelConfig model = CapacityPlanner.readConfig(config);
        CapacityRequest request = new CapacityRequest(acceleratorMemory.bytes(), reserveFraction, replicas,
                Optional.ofNullable(dtype).map(DType::parse));
        RouterRequest routers = new RouterRequest(concurrency, context, RouterRequest.Device.parse(routerOn),
                routerHostMemory == null ? 0 : routerHostMemory.bytes(), acceleratorBandwidth, hostBandwidth);
        CapacityPlan plan = CapacityPlanner.plan(model, request, routers);
        PrintWriter out = spec.commandLine().getOut();
        out.println(json ? plan.toJson() : table(plan));
        out.flush();
        return 0;
    }

    static String table(CapacityPlan plan) {
        ModelFootprint m = plan.model();
        CapacityRequest r = plan.request();
        ModelFootprint.DenseParameters d = m.dense();
        StringBuilder s = new StringBuilder();
        s.append(String.format(Locale.ROOT,
                "Capacity plan for %s (%s): %d layers (%d MoE), hidden %d, %d experts per MoE layer, top-%d, expert FFN %d%n%n",
                m.model(), m.architecture().cliName(), m.numLayers(), m.moeLayers(), m.hiddenSize(), m.expertsPerLayer(),
                m.expertsPerToken(), m.expertIntermediateSize()));

        s.append(String.format(Locale.ROOT, "%-32s %12s %12s%n", "Parameters", "total", "active"));
        row3(s, "routed experts (" + m.totalExperts() + ")", params(m.routedExpertParams()), params(m.activeExpertParams()));
        row3(s, "dense (router side)", params(d.total()), params(d.total()));
        row3(s, "all", params(m.totalParams()), params(m.activeParams()));
        s.append(String.format(Locale.ROOT,
                "  dense: embeddings %s, LM head %s, attention %s, dense FFN %s, shared experts %s, routers %s, norms %s%n%n",
                params(d.embeddings()), params(d.lmHead()), params(d.attention()), params(d.denseFfn()),
                params(d.sharedExperts()), params(d.routers()), params(d.norms())));

        s.append(String.format(Locale.ROOT, "Memory (experts %s, dense %s)%n",
                CapacityPlan.dtypeName(plan.expertDtype()), CapacityPlan.dtypeName(plan.denseDtype())));
        row(s, "one expert", MemorySize.format(plan.bytesPerExpert()),
                String.format(Locale.ROOT, "%,d bytes, %s parameters", plan.bytesPerExpert(), params(m.paramsPerExpert())));
        row(s, "all routed experts", MemorySize.format(plan.routedExpertBytes()), "");
        row(s, "dense part", MemorySize.format(plan.denseBytes()), "held by every router");
        s.append(System.lineSeparator());

        s.append(String.format(Locale.ROOT, "Workers (%s = %s each, %.0f%% reserve -> %s for experts)%n",
                MemorySize.format(r.acceleratorBytes()), MemorySize.formatDecimalGb(r.acceleratorBytes()),
                r.reserveFraction() * 100, MemorySize.format(r.usableBytes())));
        row(s, "expert slots per worker", String.valueOf(plan.slotsPerWorker()), "");
        row(s, "expert copies", String.valueOf(plan.expertCopies()), "replicas " + r.minReplicas());
        row(s, "workers needed", String.valueOf(plan.workers()), "");
        row(s, "experts per worker", range(plan.minExpertsPerWorker(), plan.maxExpertsPerWorker()), "");
        row(s, "expert memory per worker", MemorySize.format(plan.maxExpertBytesPerWorker()), "fullest worker");
        row(s, "free per worker", MemorySize.format(plan.minFreeBytesPerWorker()),
                (plan.minFreeBytesPerWorker() / plan.bytesPerExpert()) + " more experts on the fullest worker");
        row(s, "redundant copies that fit", String.valueOf(plan.redundantCopies()),
                String.format(Locale.ROOT, "%.1f%% of the experts, for hot-expert replicas",
                        100.0 * plan.redundantCopies() / plan.totalExperts()));

        s.append(System.lineSeparator());
        routers(s, plan);

        s.append(System.lineSeparator()).append("Notes").append(System.lineSeparator());
        plan.notes().forEach(n -> s.append("  - ").append(n).append(System.lineSeparator()));
        return s.toString().stripTrailing();
    }

    private static void routers(StringBuilder s, CapacityPlan plan) {
        RouterPlan p = plan.routers();
        RouterRequest r = p.request();
        boolean gpu = r.device() == RouterRequest.Device.GPU;
        s.append(String.format(Locale.ROOT, "Routers (%d sequences of up to %d tokens; %s)%n", r.concurrency(),
                r.contextTokens(), gpu ? "one " + MemorySize.format(plan.request().acceleratorBytes()) + " accelerator each"
                        : p.memoryBytesPerRouter() == 0 ? "one CPU host"
                        : "CPU hosts of " + MemorySize.format(r.hostBytes()) + " each"));
        row(s, "dense weights", MemorySize.format(p.denseBytes()), "a copy on every router");
        row(s, "KV cache per token", MemorySize.format(p.kvBytesPerToken()),
                String.format(Locale.ROOT, "%,d bytes, %s", p.kvBytesPerToken(), CapacityPlan.dtypeName(p.kvDtype())));
        row(s, "KV cache per sequence", MemorySize.format(p.kvBytesPerSequence()), "at " + r.contextTokens() + " tokens");
        row(s, "KV cache, all sequences", MemorySize.format(p.kvBytes()), "");
        if (!p.fits()) {
            row(s, "routers needed", "-", "dense weights and one sequence do not fit one router (see notes)");
            s.append(String.format(Locale.ROOT, "%nIn all: %d accelerators for the workers; no router fits%n",
                    plan.workers()));
            return;
        }
        row(s, "routers needed", String.valueOf(p.routers()), p.sequencesPerRouter() + " sequences on the fullest");
        row(s, "memory per router", MemorySize.format(p.bytesPerRouter()),
                p.memoryBytesPerRouter() == 0 ? "dense weights and KV cache: the host needs this plus room for the runtime"
                        : "of " + MemorySize.format(p.memoryBytesPerRouter()) + " usable");
        s.append(System.lineSeparator());
        String each = MemorySize.format(plan.request().acceleratorBytes());
        if (gpu) {
            s.append(String.format(Locale.ROOT, "In all: %d accelerators of %s (%s + %s)%n",
                    plan.accelerators(), each, count(plan.workers(), "expert worker"), count(p.routers(), "router")));
        } else {
            s.append(String.format(Locale.ROOT, "In all: %d accelerators of %s for the expert workers + %s with %s"
                    + " each for dense weights and KV cache%n",
                    plan.workers(), each, count(p.routers(), "CPU router host"), MemorySize.format(p.bytesPerRouter())));
        }
        s.append(System.lineSeparator());
        double perSecond = p.stepsPerSecond();
        String routerPart = String.format(Locale.ROOT,
                "a router reads its dense weights and %d sequences' KV cache each step (%s, %.1f ms at %.0f GB/s)",
                p.sequencesPerRouter(), MemorySize.format(p.routerStepBytes()), p.routerStepSeconds() * 1e3,
                gpu ? r.acceleratorGbps() : r.hostGbps());
        String workerPart = String.format(Locale.ROOT,
                "the fullest worker reads %s of experts (%.1f of %d experts per MoE layer reached by %d tokens;"
                        + " %.1f ms at %.0f GB/s)",
                MemorySize.format(p.workerStepBytes()), p.expertsTouchedPerLayer(), plan.model().expertsPerLayer(),
                r.concurrency(), p.workerStepSeconds() * 1e3, r.acceleratorGbps());
        s.append(String.format(Locale.ROOT, "Decode speed is set by the %s: %s, while %s.%n",
                p.routersSetTheSpeed() ? "routers" : "expert workers",
                p.routersSetTheSpeed() ? routerPart : workerPart, p.routersSetTheSpeed() ? workerPart : routerPart));
        s.append(String.format(Locale.ROOT,
                "At most %.0f tokens/s per sequence, %,.0f tokens/s in all, with every sequence at full context,"
                        + " from memory bandwidth alone.%n",
                perSecond, perSecond * r.concurrency()));
    }

    private static String count(int n, String thing) {
        return n + " " + thing + (n == 1 ? "" : "s");
    }

    private static void row3(StringBuilder s, String label, String a, String b) {
        s.append(String.format(Locale.ROOT, "  %-30s %12s %12s%n", label, a, b));
    }

    private static void row(StringBuilder s, String label, String value, String remark) {
        s.append(String.format(Locale.ROOT, "  %-30s %12s%s%n", label, value, remark.isEmpty() ? "" : "   " + remark));
    }

    private static String range(long min, long max) {
        return min == max ? String.valueOf(max) : min + "-" + max;
    }

    /** Parameter counts as people read them: 107.77 B, 125.83 M, 24.58 K, 512. */
    private static String params(long n) {
        if (n >= 1_000_000_000L) {
            return String.format(Locale.ROOT, "%.2f B", n / 1e9);
        }
        if (n >= 1_000_000L) {
            return String.format(Locale.ROOT, "%.2f M", n / 1e6);
        }
        if (n >= 1_000L) {
            return String.format(Locale.ROOT, "%.2f K", n / 1e3);
        }
        return String.valueOf(n);
    }

    static final class MemorySizeConverter implements ITypeConverter<MemorySize> {
        @Override
        public MemorySize convert(String value) {
            try {
                return MemorySize.parse(value);
            } catch (IllegalArgumentException e) {
                throw new TypeConversionException(e.getMessage());
            }
        }
    }
}
