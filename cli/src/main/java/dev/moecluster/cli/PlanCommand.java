package dev.moecluster.cli;

import dev.moecluster.coordinator.CapacityPlan;
import dev.moecluster.coordinator.CapacityPlanner;
import dev.moecluster.coordinator.CapacityRequest;
import dev.moecluster.coordinator.MemorySize;
import dev.moecluster.coordinator.ModelFootprint;
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

/** {@code moe plan}: how many expert workers a model needs at a given accelerator memory. */
@Command(name = "plan", mixinStandardHelpOptions = true,
        description = "Size the expert workers for a model from its config.json: parameters (experts vs dense), bytes per"
                + " expert, workers needed at the given accelerator memory, experts and memory per worker, and the headroom"
                + " for redundant copies of hot experts. Reads no weights.")
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

    @Option(names = "--json", description = "Print the plan as JSON (bytes and parameter counts as integers).")
    boolean json;

    @Override
    public Integer call() throws Exception {
        ModelConfig model = CapacityPlanner.readConfig(config);
        CapacityRequest request = new CapacityRequest(acceleratorMemory.bytes(), reserveFraction, replicas,
                Optional.ofNullable(dtype).map(DType::parse));
        CapacityPlan plan = CapacityPlanner.plan(model, request);
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
        row(s, "dense part (router)", MemorySize.format(plan.denseBytes()),
                plan.denseFitsOneAccelerator() ? "fits one accelerator" : "does not fit one accelerator");
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

        s.append(System.lineSeparator()).append("Notes").append(System.lineSeparator());
        plan.notes().forEach(n -> s.append("  - ").append(n).append(System.lineSeparator()));
        return s.toString().stripTrailing();
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
