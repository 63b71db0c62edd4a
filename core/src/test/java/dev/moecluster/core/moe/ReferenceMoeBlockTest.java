package dev.moecluster.core.moe;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import com.google.gson.GsonBuilder;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import dev.moecluster.core.model.Architecture;
import dev.moecluster.core.model.Checkpoint;
import dev.moecluster.core.model.ModelConfig;
import dev.moecluster.core.model.ModelGenerator;
import dev.moecluster.core.model.ModelGenerator.Spec;
import dev.moecluster.core.model.SafetensorsWriter;
import dev.moecluster.core.tensor.DType;
import dev.moecluster.core.tensor.FloatMatrix;
import dev.moecluster.core.tensor.Numerics;
import dev.moecluster.core.tensor.Tensor;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * Compares {@link ReferenceMoeBlock#forward} with a slow per-token implementation written here from the
 * transformers math, reading every weight from the checkpoint by index with {@link Tensor#getFloat}, in
 * double. Llama 4's fused {@code gate_up_proj [E, H, 2I]} and {@code down_proj [E, I, H]} are read as
 * stored, so the layout transpose in {@code CheckpointLayout} is checked independently.
 */
class ReferenceMoeBlockTest {

    private static final int TOKENS = 6;

    @TempDir
    Path tmp;

    // ---------------------------------------------------------------- the slow reference

    /** One token's gate decision: experts in choice order and their weights. */
    record Choice(int[] experts, double[] weights) {}

    private static double[] row(Checkpoint c, String name, long row, int width) {
        Tensor t = c.tensor(name);
        double[] v = new double[width];
        for (int i = 0; i < width; i++) {
            v[i] = t.getFloat(row * width + i);
        }
        return v;
    }

    private static double dot(double[] a, float[] x, int offset) {
        double s = 0;
        for (int i = 0; i < a.length; i++) {
            s += a[i] * x[offset + i];
        }
        return s;
    }

    private static double sigmoid(double v) {
        return 1 / (1 + Math.exp(-v));
    }

    /** Indices of the k largest values, largest first, lower index on ties. */
    private static int[] topK(double[] v, int k) {
        int[] out = new int[k];
        boolean[] used = new boolean[v.length];
        for (int j = 0; j < k; j++) {
            int best = -1;
            for (int i = 0; i < v.length; i++) {
                if (!used[i] && (best < 0 || v[i] > v[best])) {
                    best = i;
                }
            }
            used[best] = true;
            out[j] = best;
        }
        return out;
    }

    private static Choice route(ModelConfig cfg, double[] logits, double[] bias) {
        int k = cfg.expertsPerToken();
        int e = logits.length;
        double[] w = new double[k];
        int[] chosen;
        switch (cfg.architecture()) {
            case MIXTRAL, QWEN3_MOE, QWEN2_MOE -> {
                double max = Double.NEGATIVE_INFINITY;
                for (double l : logits) {
                    max = Math.max(max, l);
                }
                double[] p = new double[e];
                double z = 0;
                for (int i = 0; i < e; i++) {
                    p[i] = Math.exp(logits[i] - max);
                    z += p[i];
                }
                for (int i = 0; i < e; i++) {
                    p[i] /= z;
                }
                chosen = topK(p, k);
                double sum = 0;
                for (int j = 0; j < k; j++) {
                    sum += p[chosen[j]];
                }
                boolean renorm = cfg.architecture() == Architecture.MIXTRAL || cfg.normTopkProb();
                for (int j = 0; j < k; j++) {
                    w[j] = renorm ? p[chosen[j]] / sum : p[chosen[j]];
                    if (cfg.architecture() != Architecture.MIXTRAL) { // Qwen casts back to the model dtype
                        w[j] = Numerics.roundTo(cfg.dtype(), (float) w[j]);
                    }
                }
            }
            case LLAMA4 -> {
                chosen = topK(logits, k);
                for (int j = 0; j < k; j++) {
                    w[j] = Numerics.roundTo(cfg.dtype(), (float) sigmoid(logits[chosen[j]]));
                }
            }
            case DEEPSEEK_V3 -> {
                double[] s = new double[e];
                double[] choice = new double[e];
                for (int i = 0; i < e; i++) {
                    s[i] = sigmoid(logits[i]);
                    choice[i] = s[i] + (bias == null ? 0 : bias[i]);
                }
                int groups = cfg.nGroup();
                int size = e / groups;
                double[] groupScore = new double[groups];
                for (int g = 0; g < groups; g++) {
                    int[] top2 = topK(java.util.Arrays.copyOfRange(choice, g * size, (g + 1) * size), 2);
                    groupScore[g] = choice[g * size + top2[0]] + choice[g * size + top2[1]];
                }
                boolean[] keep = new boolean[groups];
                for (int g : topK(groupScore, cfg.topkGroup())) {
                    keep[g] = true;
                }
                for (int i = 0; i < e; i++) {
                    if (!keep[i / size]) {
                        choice[i] = Double.NEGATIVE_INFINITY;
                    }
                }
                chosen = topK(choice, k);
                double sum = 0;
                for (int j = 0; j < k; j++) {
                    sum += s[chosen[j]];
                }
                for (int j = 0; j < k; j++) {
                    w[j] = (cfg.normTopkProb() ? s[chosen[j]] / (sum + 1e-20) : s[chosen[j]]) * cfg.routedScalingFactor();
                }
            }
            default -> throw new AssertionError();
        }
        return new Choice(chosen, w);
    }

    /** SwiGLU from Linear-layout tensors {@code gate|up [I, H]}, {@code down [H, I]}. */
    private static double[] linearSwiGlu(Checkpoint c, String gate, String up, String down, double[] x) {
        int h = x.length;
        int inter = (int) c.shapeOf(gate)[0];
        Tensor g = c.tensor(gate), u = c.tensor(up), d = c.tensor(down);
        double[] act = new double[inter];
        for (int i = 0; i < inter; i++) {
            double gs = 0, us = 0;
            for (int k = 0; k < h; k++) {
                gs += g.getFloat((long) i * h + k) * x[k];
                us += u.getFloat((long) i * h + k) * x[k];
            }
            act[i] = gs * sigmoid(gs) * us;
        }
        double[] out = new double[h];
        for (int k = 0; k < h; k++) {
            for (int i = 0; i < inter; i++) {
                out[k] += d.getFloat((long) k * inter + i) * act[i];
            }
        }
        return out;
    }

    /** Llama 4 expert {@code e} straight from the fused tensors: {@code bmm(x, gate_up_proj)}, chunk, {@code bmm(., down_proj)}. */
    private static double[] llama4FusedExpert(Checkpoint c, String prefix, int e, double[] x) {
        Tensor gateUp = c.tensor(prefix + "experts.gate_up_proj"); // [E, H, 2I]
        Tensor down = c.tensor(prefix + "experts.down_proj"); // [E, I, H]
        int h = x.length;
        int inter = (int) gateUp.dim(2) / 2;
        double[] act = new double[inter];
        for (int i = 0; i < inter; i++) {
            double gs = 0, us = 0;
            for (int k = 0; k < h; k++) {
                long base = ((long) e * h + k) * 2 * inter;
                gs += gateUp.getFloat(base + i) * x[k];
                us += gateUp.getFloat(base + inter + i) * x[k];
            }
            act[i] = us * (gs * sigmoid(gs));
        }
        double[] out = new double[h];
        for (int k = 0; k < h; k++) {
            for (int i = 0; i < inter; i++) {
                out[k] += act[i] * down.getFloat(((long) e * inter + i) * h + k);
            }
        }
        return out;
    }

    /** The whole sparse-MoE block for one token, as the transformers block of the architecture computes it. */
    private static double[] slowBlock(Checkpoint c, ModelConfig cfg, int layer, double[] x, Choice choice) {
        int h = x.length;
        String p = cfg.weightPrefix() + "layers." + layer + ".";
        double[] out = new double[h];
        for (int j = 0; j < choice.experts().length; j++) {
            int e = choice.experts()[j];
            double w = choice.weights()[j];
            double[] y;
            switch (cfg.architecture()) {
                case MIXTRAL -> {
                    String m = p + "block_sparse_moe.experts." + e + ".";
                    y = scale(linearSwiGlu(c, m + "w1.weight", m + "w3.weight", m + "w2.weight", x), w);
                }
                case QWEN3_MOE, QWEN2_MOE, DEEPSEEK_V3 -> {
                    String m = p + "mlp.experts." + e + ".";
                    y = scale(linearSwiGlu(c, m + "gate_proj.weight", m + "up_proj.weight", m + "down_proj.weight", x), w);
                }
                case LLAMA4 -> y = llama4FusedExpert(c, p + "feed_forward.", e, scale(x, w)); // scales the INPUT
                default -> throw new AssertionError();
            }
            for (int k = 0; k < h; k++) {
                out[k] += y[k];
            }
        }
        String shared = switch (cfg.architecture()) {
            case MIXTRAL, QWEN3_MOE -> null;
            case QWEN2_MOE -> p + "mlp.shared_expert.";
            case LLAMA4 -> p + "feed_forward.shared_expert.";
            case DEEPSEEK_V3 -> p + "mlp.shared_experts.";
        };
        if (shared != null) {
            double[] y = linearSwiGlu(c, shared + "gate_proj.weight", shared + "up_proj.weight", shared + "down_proj.weight", x);
            double s = 1;
            if (cfg.architecture() == Architecture.QWEN2_MOE) {
                double[] g = row(c, p + "mlp.shared_expert_gate.weight", 0, h);
                double gx = 0;
                for (int k = 0; k < h; k++) {
                    gx += g[k] * x[k];
                }
                s = sigmoid(gx);
            }
            for (int k = 0; k < h; k++) {
                out[k] += s * y[k];
            }
        }
        return out;
    }

    private static double[] scale(double[] v, double s) {
        double[] o = new double[v.length];
        for (int i = 0; i < v.length; i++) {
            o[i] = v[i] * s;
        }
        return o;
    }

    private static String gateName(ModelConfig cfg, int layer) {
        String p = cfg.weightPrefix() + "layers." + layer + ".";
        return switch (cfg.architecture()) {
            case MIXTRAL -> p + "block_sparse_moe.gate.weight";
            case LLAMA4 -> p + "feed_forward.router.weight";
            default -> p + "mlp.gate.weight";
        };
    }

    /** Runs the block and the slow reference on the same input and compares choices, weights and outputs. */
    private static void assertMatchesSlowReference(Path dir, int tokens, long seed) throws IOException {
        try (ReferenceMoeBlock block = ReferenceMoeBlock.open(dir); Checkpoint c = Checkpoint.open(dir)) {
            ModelConfig cfg = block.config();
            int h = cfg.hiddenSize();
            SplittableRandom r = new SplittableRandom(seed);
            float[] x = new float[tokens * h];
            for (int i = 0; i < x.length; i++) {
                x[i] = (float) r.nextGaussian();
            }
            assertThat(cfg.moeLayerList()).isNotEmpty();
            for (int layer : cfg.moeLayerList()) {
                ReferenceMoeBlock.Result result = block.forward(layer, new FloatMatrix(tokens, h, x.clone()));
                assertThat(result.output().rows()).isEqualTo(tokens);
                assertThat(result.output().cols()).isEqualTo(h);
                GateResult gate = result.gate();
                assertThat(gate.scalesInput()).isEqualTo(cfg.architecture() == Architecture.LLAMA4);
                String biasName = cfg.weightPrefix() + "layers." + layer + ".mlp.gate.e_score_correction_bias";
                double[] bias = c.contains(biasName) ? row(c, biasName, 0, cfg.numExperts()) : null;
                for (int t = 0; t < tokens; t++) {
                    double[] logits = new double[cfg.numExperts()];
                    for (int e = 0; e < logits.length; e++) {
                        logits[e] = dot(row(c, gateName(cfg, layer), e, h), x, t * h);
                    }
                    Choice expected = route(cfg, logits, bias);
                    int k = cfg.expertsPerToken();
                    for (int j = 0; j < k; j++) {
                        assertThat(gate.expert(t, j)).as("layer %d token %d slot %d expert", layer, t, j)
                                .isEqualTo(expected.experts()[j]);
                        double w = expected.weights()[j];
                        // bf16-rounded weights may land one bf16 step apart when f32 and double straddle a tie.
                        double tol = cfg.dtype() == DType.BF16 && cfg.architecture() != Architecture.MIXTRAL
                                && cfg.architecture() != Architecture.DEEPSEEK_V3 ? Math.ulp((float) w) * 65536.0 : 1e-5 * Math.abs(w);
                        assertThat((double) gate.weight(t, j)).as("layer %d token %d slot %d weight", layer, t, j)
                                .isCloseTo(w, org.assertj.core.api.Assertions.within(tol + 1e-7));
                    }
                    // The outputs are compared for the weights the block used, checked just above.
                    double[] used = new double[k];
                    for (int j = 0; j < k; j++) {
                        used[j] = gate.weight(t, j);
                    }
                    double[] xt = new double[h];
                    for (int i = 0; i < h; i++) {
                        xt[i] = x[t * h + i];
                    }
                    double[] want = slowBlock(c, cfg, layer, xt, new Choice(expected.experts(), used));
                    double rowScale = 0;
                    for (double v : want) {
                        rowScale = Math.max(rowScale, Math.abs(v));
                    }
                    for (int i = 0; i < h; i++) {
                        assertThat((double) result.output().get(t, i)).as("layer %d token %d column %d", layer, t, i)
                                .isCloseTo(want[i], org.assertj.core.api.Assertions.within(1e-4 * rowScale + 1e-6));
                    }
                }
            }
        }
    }

    // ---------------------------------------------------------------- tests

    static Stream<Arguments> generatedModels() {
        List<Arguments> a = new ArrayList<>();
        for (Architecture arch : List.of(Architecture.MIXTRAL, Architecture.QWEN3_MOE, Architecture.QWEN2_MOE, Architecture.LLAMA4)) {
            for (DType dtype : List.of(DType.F32, DType.BF16)) {
                a.add(Arguments.of(arch, dtype));
            }
        }
        return a.stream();
    }

    @ParameterizedTest(name = "{0} {1}")
    @MethodSource("generatedModels")
    void forwardMatchesASlowPerTokenImplementation(Architecture arch, DType dtype) throws IOException {
        Path dir = tmp.resolve(arch.cliName());
        ModelGenerator.generate(Spec.tiny(arch).withDtype(dtype), dir);
        assertMatchesSlowReference(dir, TOKENS, 99);
    }

    @Test
    void qwen3WithoutNormAndWithThreeExpertsPerTokenMatchesTheSlowImplementation() throws IOException {
        Path dir = tmp.resolve("q3");
        ModelGenerator.generate(new Spec(Architecture.QWEN3_MOE, 1, 32, 16, 6, 3, 5, DType.BF16, 1), dir);
        Path config = dir.resolve("config.json");
        JsonObject json = JsonParser.parseString(Files.readString(config)).getAsJsonObject();
        json.addProperty("norm_topk_prob", false);
        Files.writeString(config, json.toString());
        assertMatchesSlowReference(dir, 9, 7);
    }

    @Test
    void deepseekV3BlockMatchesTheSlowImplementation() throws IOException {
        // gen-model cannot write DeepSeek-V3 (MLA attention), so write just the MoE tensors of layer 1.
        Path dir = Files.createDirectories(tmp.resolve("dsv3"));
        int h = 16, inter = 8, experts = 8;
        Files.writeString(dir.resolve("config.json"), """
                {"architectures": ["DeepseekV3ForCausalLM"], "model_type": "deepseek_v3", "hidden_size": 16,
                 "num_hidden_layers": 2, "first_k_dense_replace": 1, "n_routed_experts": 8, "n_shared_experts": 1,
                 "num_experts_per_tok": 2, "n_group": 4, "topk_group": 2, "routed_scaling_factor": 2.5,
                 "norm_topk_prob": true, "moe_intermediate_size": 8, "intermediate_size": 32, "torch_dtype": "bfloat16"}
                """);
        SplittableRandom r = new SplittableRandom(31);
        try (Arena arena = Arena.ofConfined()) {
            SafetensorsWriter w = new SafetensorsWriter();
            String p = "model.layers.1.mlp.";
            w.put(p + "gate.weight", Tensor.of(arena, DType.BF16, new long[] {experts, h}, ExpertWeightsTest.gaussian(experts * h, r, 0.5)));
            w.put(p + "gate.e_score_correction_bias",
                    Tensor.of(arena, DType.F32, new long[] {experts}, ExpertWeightsTest.gaussian(experts, r, 0.3)));
            for (int e = 0; e < experts; e++) {
                String m = p + "experts." + e + ".";
                w.put(m + "gate_proj.weight", Tensor.of(arena, DType.BF16, new long[] {inter, h}, ExpertWeightsTest.gaussian(inter * h, r, 0.25)));
                w.put(m + "up_proj.weight", Tensor.of(arena, DType.BF16, new long[] {inter, h}, ExpertWeightsTest.gaussian(inter * h, r, 0.25)));
                w.put(m + "down_proj.weight", Tensor.of(arena, DType.BF16, new long[] {h, inter}, ExpertWeightsTest.gaussian(h * inter, r, 0.35)));
            }
            String s = p + "shared_experts.";
            w.put(s + "gate_proj.weight", Tensor.of(arena, DType.BF16, new long[] {inter, h}, ExpertWeightsTest.gaussian(inter * h, r, 0.25)));
            w.put(s + "up_proj.weight", Tensor.of(arena, DType.BF16, new long[] {inter, h}, ExpertWeightsTest.gaussian(inter * h, r, 0.25)));
            w.put(s + "down_proj.weight", Tensor.of(arena, DType.BF16, new long[] {h, inter}, ExpertWeightsTest.gaussian(h * inter, r, 0.35)));
            w.write(dir.resolve("model.safetensors"));
        }
        assertMatchesSlowReference(dir, 12, 3);
    }

    @Test
    void llama4MultimodalCheckpointGivesTheSameOutputAsTextOnly() throws IOException {
        Path text = tmp.resolve("text");
        ModelConfig cfg = ModelGenerator.generate(Spec.tiny(Architecture.LLAMA4).withDtype(DType.BF16), text);
        // Re-publish the same weights the way Llama4ForConditionalGeneration checkpoints name them.
        Path mm = Files.createDirectories(tmp.resolve("multimodal"));
        try (Checkpoint c = Checkpoint.open(text)) {
            SafetensorsWriter w = new SafetensorsWriter();
            for (String name : c.tensorNames()) {
                w.put("language_model." + name, c.tensor(name));
            }
            w.writeSharded(mm, 2);
        }
        JsonObject textConfig = JsonParser.parseString(Files.readString(text.resolve("config.json"))).getAsJsonObject();
        textConfig.remove("architectures");
        JsonObject top = new JsonObject();
        top.add("architectures", JsonParser.parseString("[\"Llama4ForConditionalGeneration\"]"));
        top.addProperty("model_type", "llama4");
        top.addProperty("torch_dtype", "bfloat16");
        top.add("text_config", textConfig);
        Files.writeString(mm.resolve("config.json"), new GsonBuilder().create().toJson(top));

        float[] x = ExpertWeightsTest.gaussian(4 * cfg.hiddenSize(), new SplittableRandom(8), 1.0);
        try (ReferenceMoeBlock a = ReferenceMoeBlock.open(text); ReferenceMoeBlock b = ReferenceMoeBlock.open(mm)) {
            assertThat(b.config().weightPrefix()).isEqualTo("language_model.model.");
            assertThat(b.config().moeLayerList()).containsExactly(1);
            var ra = a.forward(1, new FloatMatrix(4, cfg.hiddenSize(), x.clone()));
            var rb = b.forward(1, new FloatMatrix(4, cfg.hiddenSize(), x.clone()));
            assertThat(rb.gate().experts()).containsExactly(ra.gate().experts());
            assertThat(rb.output().data()).containsExactly(ra.output().data());
        }
        assertMatchesSlowReference(mm, 3, 4);
    }

    @Test
    void eachTokenIsIndependentOfTheOthersInTheBatch() throws IOException {
        Path dir = tmp.resolve("batch");
        ModelConfig cfg = ModelGenerator.generate(Spec.tiny(Architecture.QWEN2_MOE), dir);
        int h = cfg.hiddenSize();
        float[] x = ExpertWeightsTest.gaussian(5 * h, new SplittableRandom(12), 1.0);
        try (ReferenceMoeBlock block = ReferenceMoeBlock.open(dir)) {
            FloatMatrix all = block.forward(0, new FloatMatrix(5, h, x.clone())).output();
            for (int t = 0; t < 5; t++) {
                float[] one = java.util.Arrays.copyOfRange(x, t * h, (t + 1) * h);
                FloatMatrix single = block.forward(0, new FloatMatrix(1, h, one)).output();
                for (int i = 0; i < h; i++) {
                    assertThat(all.get(t, i)).isCloseTo(single.get(0, i),
                            org.assertj.core.api.Assertions.within(1e-5f * (1 + Math.abs(single.get(0, i)))));
                }
            }
        }
    }

    @Test
    void anEmptyBatchGivesAnEmptyOutput() throws IOException {
        Path dir = tmp.resolve("empty");
        ModelGenerator.generate(Spec.tiny(Architecture.MIXTRAL), dir);
        try (ReferenceMoeBlock block = ReferenceMoeBlock.open(dir)) {
            ReferenceMoeBlock.Result r = block.forward(0, new FloatMatrix(0, 64, new float[0]));
            assertThat(r.output().rows()).isZero();
            assertThat(r.gate().tokens()).isZero();
        }
    }

    @Test
    void denseLayersAndWrongWidthsAreRejected() throws IOException {
        Path dir = tmp.resolve("l4");
        ModelGenerator.generate(Spec.tiny(Architecture.LLAMA4), dir);
        try (ReferenceMoeBlock block = ReferenceMoeBlock.open(dir)) {
            assertThatThrownBy(() -> block.forward(0, new FloatMatrix(1, 64, new float[64])))
                    .isInstanceOf(IllegalArgumentException.class)
                    .hasMessageContaining("layer 0 is not a MoE layer");
            assertThatThrownBy(() -> block.forward(7, new FloatMatrix(1, 64, new float[64])))
                    .isInstanceOf(IllegalArgumentException.class);
            // One row of width 128 would otherwise be read as two rows of 64 by the gate GEMM.
            assertThatThrownBy(() -> block.forward(1, new FloatMatrix(1, 128, new float[128])))
                    .isInstanceOf(IllegalArgumentException.class)
                    .hasMessageContaining("128")
                    .hasMessageContaining("64");
            assertThatThrownBy(() -> block.forward(1, new FloatMatrix(2, 32, new float[64])))
                    .isInstanceOf(IllegalArgumentException.class);
        }
    }
}
