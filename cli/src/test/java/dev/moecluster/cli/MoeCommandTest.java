package dev.moecluster.cli;

import static org.assertj.core.api.Assertions.assertThat;

import dev.moecluster.core.model.Architecture;
import dev.moecluster.core.model.Checkpoint;
import dev.moecluster.core.model.ModelConfig;
import dev.moecluster.core.tensor.DType;
import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import picocli.CommandLine;

/** The {@code moe} command as a user runs it: parsed arguments, exit codes, printed output. */
class MoeCommandTest {
    @TempDir
    Path tmp;

    /** Runs the command line in process and returns {exit code, stdout, stderr}. */
    static Object[] run(String... args) {
        PrintStream oldOut = System.out;
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        StringWriter err = new StringWriter();
        try {
            System.setOut(new PrintStream(out, true, StandardCharsets.UTF_8));
            var cl = Moe.commandLine();
            cl.setErr(new PrintWriter(err, true));
            int code = cl.execute(args);
            return new Object[] {code, out.toString(StandardCharsets.UTF_8), err.toString()};
        } finally {
            System.setOut(oldOut);
        }
    }

    /** gRPC says only "UNAVAILABLE: io exception"; the command adds what refused and which address it dialled. */
    @Test
    void aClientCommandThatReachesNoServerNamesTheAddressAndTheFlag() throws Exception {
        int closed;
        try (java.net.ServerSocket s = new java.net.ServerSocket(0, 1, java.net.InetAddress.getByName("127.0.0.1"))) {
            closed = s.getLocalPort();
        }
        String target = "127.0.0.1:" + closed;
        for (String[] args : List.of(new String[] {"generate", "--target", target, "--prompt", "hi"},
                new String[] {"probe", "--target", target, "--requests", "1"},
                new String[] {"admin", "status", "--target", target})) {
            Object[] r = run(args);
            assertThat(r[0]).as(String.join(" ", args)).isEqualTo(1);
            assertThat((String) r[2]).as(String.join(" ", args))
                    .contains("UNAVAILABLE: io exception: ", "Connection refused", "(calling " + target + ", set by --target)");
        }
    }

    @Test
    void genModelWritesAHuggingFaceDirectory() throws Exception {
        Path out = tmp.resolve("qwen");
        Object[] r = run("gen-model", "--arch", "qwen3-moe", "--out", out.toString(), "--layers", "3", "--hidden", "32",
                "--intermediate", "48", "--experts", "6", "--top-k", "3", "--dtype", "f32", "--shards", "2");
        assertThat(r[0]).isEqualTo(0);
        assertThat((String) r[1]).contains("wrote Qwen3MoeForCausalLM model", "3 layers", "6 experts x intermediate 48", "top-3");
        ModelConfig cfg = ModelConfig.load(out);
        assertThat(cfg.architecture()).isEqualTo(Architecture.QWEN3_MOE);
        assertThat(cfg.numLayers()).isEqualTo(3);
        assertThat(cfg.hiddenSize()).isEqualTo(32);
        assertThat(cfg.numExperts()).isEqualTo(6);
        assertThat(cfg.expertsPerToken()).isEqualTo(3);
        assertThat(out.resolve("model.safetensors.index.json")).exists();
        assertThat(out.resolve("tokenizer.json")).exists();
        try (Checkpoint ck = Checkpoint.open(out)) {
            assertThat(ck.shapeOf("model.layers.2.mlp.experts.5.down_proj.weight")).containsExactly(32, 48);
            assertThat(ck.shapeOf("model.layers.0.mlp.gate.weight")).containsExactly(6, 32);
        }
    }

    @Test
    void genModelWithFp8ExpertsWritesMetasFp8Layout() throws Exception {
        Path out = tmp.resolve("llama-fp8");
        Object[] r = run("gen-model", "--arch", "llama4", "--out", out.toString(), "--hidden", "32", "--intermediate", "48",
                "--experts", "4", "--fp8-experts");
        assertThat(r[0]).isEqualTo(0);
        assertThat((String) r[1]).contains("wrote Llama4ForCausalLM model", "bf16, experts fp8 e4m3 with per-channel scales");
        ModelConfig cfg = ModelConfig.load(out);
        assertThat(cfg.expertDtype()).isEqualTo(DType.FP8_E4M3);
        assertThat(cfg.weightPrefix()).isEqualTo("language_model.model.");
        try (Checkpoint ck = Checkpoint.open(out)) {
            String e = "language_model.model.layers.1.feed_forward.experts.3.";
            assertThat(ck.tensor(e + "up_proj.weight").dtype()).isEqualTo(DType.FP8_E4M3);
            assertThat(ck.shapeOf(e + "up_proj.weight_scale")).containsExactly(48, 1);
        }
    }

    @Test
    void badFlagsGiveAClearErrorAndNonZeroExit() {
        Object[] r = run("gen-model", "--arch", "gpt2", "--out", tmp.resolve("x").toString());
        assertThat(r[0]).isEqualTo(1);
        assertThat((String) r[2]).contains("unknown --arch gpt2");
        Object[] missing = run("router", "--port", "0");
        assertThat(missing[0]).isEqualTo(2);
        assertThat((String) missing[2]).contains("--workers", "--placement");
        Object[] cpu = run("local", "--cpu-workers", "-1");
        assertThat(cpu[0]).isEqualTo(2);
        assertThat((String) cpu[2]).contains("--cpu-workers must be at least 0");
        Object[] speed = run("local", "--throughput-rows-per-s", "-5");
        assertThat(speed[0]).isEqualTo(2);
        assertThat((String) speed[2]).contains("--throughput-rows-per-s must be -1 (measure), 0 (none) or a positive figure");
        Object[] planner = run("bench", "planner", "--gpu-speedup", "0");
        assertThat(planner[0]).isEqualTo(2);
        assertThat((String) planner[2]).contains("positive speedups");
    }

    @Test
    void workerDocumentsCpuKernelAndRejectsAnUnknownOneBeforeServing() {
        Path model = tmp.resolve("m");
        assertThat(run("gen-model", "--arch", "mixtral", "--out", model.toString(), "--layers", "1", "--hidden", "16",
                "--intermediate", "24", "--experts", "2", "--top-k", "1", "--dtype", "f32")[0]).isEqualTo(0);
        Object[] help = run("worker", "--help");
        assertThat((String) help[1]).contains("--cpu-kernel", "native", "vector", "auto");
        Object[] bad = run("worker", "--model", model.toString(), "--shard", "0/1", "--port", "0", "--metrics-port", "0",
                "--cpu-kernel", "blas");
        assertThat(bad[0]).isEqualTo(1);
        assertThat((String) bad[2]).contains("unknown cpu kernel 'blas' (available: auto, vector, native)");
    }

    @Test
    void coordinatorTakesEitherAMemberListOrAKubernetesService() {
        Object[] both = run("coordinator", "--members", "10.0.0.1:5701", "--kubernetes-service-dns",
                "moe-coordinator-headless.moe.svc.cluster.local");
        assertThat(both[0]).isEqualTo(2);
        assertThat((String) both[2]).contains("--members", "--kubernetes-service-dns", "mutually exclusive");

        var listed = new CoordinatorCommand();
        new CommandLine(listed).parseArgs("--members", "10.0.0.1:5701,10.0.0.2:5701");
        assertThat(listed.discovery.members).containsExactly("10.0.0.1:5701", "10.0.0.2:5701");
        assertThat(listed.discovery.kubernetesServiceDns).isNull();

        var kubernetes = new CoordinatorCommand();
        new CommandLine(kubernetes).parseArgs("--kubernetes-service-dns", "moe-coordinator-headless.moe.svc.cluster.local");
        assertThat(kubernetes.discovery.kubernetesServiceDns).isEqualTo("moe-coordinator-headless.moe.svc.cluster.local");
        assertThat(kubernetes.discovery.members).isNull();
    }

    @Test
    void demoVerifiesAgainstTheReferenceAndPrintsTheTables() {
        String old = System.getProperty("moe.cache.dir");
        System.setProperty("moe.cache.dir", tmp.resolve("cache").toString());
        try {
            Object[] r = run("demo", "--requests", "20", "--verify", "4", "--tokens", "8", "--concurrency", "2");
            String out = (String) r[1];
            assertThat(r[0]).as(out + r[2]).isEqualTo(0);
            assertThat(out).contains("MixtralForCausalLM", "verify   4 calls", "OK", "Expert load", "Workers:", "worker-2",
                    "bytes per routed token", "demo OK", "OpenAI-compatible API on http://127.0.0.1:", "reply    ", "usage {\"prompt_tokens\"");
            assertThat(Files.exists(tmp.resolve("cache").resolve("tiny-mixtral-v2").resolve("config.json"))).isTrue();
        } finally {
            if (old == null) {
                System.clearProperty("moe.cache.dir");
            } else {
                System.setProperty("moe.cache.dir", old);
            }
        }
    }

    @Test
    void benchMoeLayerPrintsTheWiresCeilingBesideTheClustersGoodput() {
        Object[] r = run("bench", "moe-layer", "--model", Clusters.tinyModel(Architecture.MIXTRAL).toString(), "--workers", "2",
                "--tokens", "8", "--requests", "6", "--warmup", "2", "--concurrency", "2", "--channels-per-worker", "2");
        assertThat(r[0]).as("stderr: %s", r[2]).isEqualTo(0);
        String out = (String) r[1];
        assertThat(out).contains("2 connection(s) per worker", "check: max relative error", "OK",
                "ratio cluster/in-process throughput: ", "of one raw loopback TCP stream measured now", "host CPU per routed row");
        assertThat(out).containsPattern("activation goodput: \\d+ MB/s = [0-9.]+ % of one raw loopback TCP stream measured now \\([1-9]\\d* MB/s\\)");
    }

    @Test
    void benchWorkerHostTimesTheHostHalfOfARound() {
        Object[] r = run("bench", "worker-host", "--hidden", "64", "--rows", "16", "--experts", "3", "--batches", "20");
        assertThat(r[0]).as("stderr: %s", r[2]).isEqualTo(0);
        assertThat((String) r[1]).contains("hidden 64, 16 rows in 3 experts per batch, bf16 on the wire, 20 batches")
                .containsPattern("host time per routed row: [0-9.]+ us")
                .containsPattern("ceiling: one plain copy of a row between native buffers: [0-9.]+ us; the host path costs [0-9.]+ such copies");
        // another wire dtype passes through the staging buffers, converted on the CPU
        Object[] fp8 = run("bench", "worker-host", "--hidden", "64", "--rows", "16", "--experts", "3", "--batches", "20",
                "--wire-dtype", "fp8");
        assertThat(fp8[0]).as("stderr: %s", fp8[2]).isEqualTo(0);
        assertThat((String) fp8[1]).contains("fp8_e4m3 on the wire").containsPattern("host time per routed row: [0-9.]+ us");
    }

    @Test
    void benchPlannerBalancesTimeOnAMixedClusterWithinTenPercentOfTheIdeal() {
        Object[] r = run("bench", "planner", "--gpu-speedup", "20", "--min-replicas", "1");
        assertThat(r[0]).as("stderr: %s", r[2]).isEqualTo(0);
        String out = (String) r[1];
        assertThat(out).contains("4 GPU + 16 CPU workers");
        // | speedup | min replicas | plan | busiest ms | ideal ms | busiest / ideal | ...
        java.util.Map<String, Double> overIdeal = new java.util.TreeMap<>();
        for (String line : out.lines().filter(l -> l.startsWith("| 20 | 1 |")).toList()) {
            String[] cells = line.split("\\|");
            overIdeal.put(cells[3].trim(), Double.parseDouble(cells[6].trim()));
        }
        assertThat(overIdeal).containsOnlyKeys("time-balanced (speeds known)", "rows-balanced (speeds unknown)", "round-robin");
        assertThat(overIdeal.get("time-balanced (speeds known)")).isBetween(1.0, 1.10);
        assertThat(overIdeal.get("rows-balanced (speeds unknown)")).isGreaterThan(4.0);
    }
}
