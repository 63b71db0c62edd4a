package dev.moecluster.core.moe;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import dev.moecluster.core.kernel.Gemm;
import dev.moecluster.core.model.Architecture;
import dev.moecluster.core.model.Checkpoint;
import dev.moecluster.core.model.CheckpointLayout;
import dev.moecluster.core.model.ModelConfig;
import dev.moecluster.core.model.ModelGenerator;
import dev.moecluster.core.model.ModelGenerator.Spec;
import dev.moecluster.core.model.SafetensorsWriter;
import dev.moecluster.core.tensor.DType;
import dev.moecluster.core.tensor.FloatMatrix;
import dev.moecluster.core.tensor.Tensor;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * FP8 checkpoints in the layout of Meta's Llama 4 FP8 release: experts load as e4m3 codes with
 * per-channel scales (one byte a weight), the kernel matches a dequantize-to-f32 reference closely,
 * and the whole MoE block matches the bf16 model the checkpoint was quantized from within FP8's
 * precision.
 */
class Fp8ExpertsTest {
    @TempDir
    Path tmp;

    /** Llama 4 (Meta's per-expert layout inside the multimodal wrapper) and Mixtral (w1/w3/w2 names). */
    private static Spec spec(Architecture arch) {
        return new Spec(arch, 2, 64, 96, 8, 0, 17, DType.BF16, 1);
    }

    private static double relativeError(float[] a, float[] b) {
        double num = 0;
        double den = 0;
        for (int i = 0; i < a.length; i++) {
            num += ((double) a[i] - b[i]) * ((double) a[i] - b[i]);
            den += (double) b[i] * b[i];
        }
        return Math.sqrt(num / den);
    }

    private static float[] gaussian(int n, long seed) {
        SplittableRandom r = new SplittableRandom(seed);
        float[] v = new float[n];
        for (int i = 0; i < n; i++) {
            v[i] = (float) r.nextGaussian();
        }
        return v;
    }

    @ParameterizedTest
    @EnumSource(names = {"LLAMA4", "MIXTRAL", "QWEN3_MOE"})
    void fp8ExpertsLoadAsOneBytePerWeightPlusOneScalePerRow(Architecture arch) throws IOException {
        Path dir = tmp.resolve("fp8");
        ModelConfig config = ModelGenerator.generate(spec(arch).withFp8Experts(true), dir);
        assertThat(config.dtype()).isEqualTo(DType.BF16);
        assertThat(config.expertDtype()).isEqualTo(DType.FP8_E4M3);
        int h = config.hiddenSize();
        int inter = config.expertIntermediateSize();
        try (Checkpoint c = Checkpoint.open(dir); Arena arena = Arena.ofConfined()) {
            CheckpointLayout layout = new CheckpointLayout(config);
            int layer = config.moeLayerList().getFirst();
            ExpertWeights w = layout.expert(c, arena, layer, 5);
            assertThat(w.dtype()).isEqualTo(DType.FP8_E4M3);
            assertThat(w.gate().data().byteSize()).isEqualTo((long) inter * h);
            assertThat(w.down().data().byteSize()).isEqualTo((long) h * inter);
            assertThat(w.scales().gate()).hasSize(inter);
            assertThat(w.scales().down()).hasSize(h);
            assertThat(w.byteSize())
                    .isEqualTo(3L * h * inter + 4L * (2 * inter + h))
                    .isEqualTo(ExpertWeights.byteSize(DType.FP8_E4M3, h, inter));
            // The codes are the checkpoint's own bytes, memory-mapped: not a copy in another dtype.
            String[] names = layout.expertTensorNames(layer, 5);
            assertThat(w.gate().data().address()).isEqualTo(c.tensor(names[0]).data().address());
        }
    }

    @ParameterizedTest
    @EnumSource(names = {"LLAMA4", "MIXTRAL"})
    void fp8KernelMatchesTheDequantizedF32ReferenceAndTheBf16OriginalWithinFp8Precision(Architecture arch)
            throws IOException {
        Path fp8Dir = tmp.resolve("fp8");
        Path bf16Dir = tmp.resolve("bf16");
        ModelConfig config = ModelGenerator.generate(spec(arch).withFp8Experts(true), fp8Dir);
        ModelConfig original = ModelGenerator.generate(spec(arch), bf16Dir);
        int h = config.hiddenSize();
        try (Checkpoint fp8 = Checkpoint.open(fp8Dir); Checkpoint bf16 = Checkpoint.open(bf16Dir);
                Arena arena = Arena.ofConfined()) {
            int layer = config.moeLayerList().getFirst();
            for (int e = 0; e < config.numExperts(); e++) {
                ExpertWeights q = new CheckpointLayout(config).expert(fp8, arena, layer, e);
                ExpertWeights deq = q.dequantized(arena);
                ExpertWeights orig = new CheckpointLayout(original).expert(bf16, arena, layer, e);
                assertThat(deq.dtype()).isEqualTo(DType.F32);
                assertDequantizedWithinHalfAnE4m3Step(deq.gate(), orig.gate(), q.scales().gate());
                assertDequantizedWithinHalfAnE4m3Step(deq.down(), orig.down(), q.scales().down());
                for (int rows : new int[] {1, 5, 33}) {
                    float[] x = gaussian(rows * h, 31L * e + rows);
                    float[] yq = new float[rows * h];
                    float[] yd = new float[rows * h];
                    float[] yo = new float[rows * h];
                    q.forward(x, rows, yq, Gemm.VECTOR);
                    deq.forward(x, rows, yd, Gemm.VECTOR);
                    orig.forward(x, rows, yo, Gemm.VECTOR);
                    // Same weights, different order of rounding: f32 accumulation error only.
                    assertThat(relativeError(yq, yd)).as("expert %d, %d rows vs dequantized", e, rows).isLessThan(1e-5);
                    // e4m3 keeps 3 mantissa bits: a few per cent, but never exact.
                    assertThat(relativeError(yq, yo)).as("expert %d, %d rows vs bf16", e, rows)
                            .isLessThan(0.08).isGreaterThan(1e-4);
                }
            }
        }
    }

    /** Every dequantized weight is within half an e4m3 step of the original (relative 2^-4, or 2^-10 of the scale near zero). */
    private static void assertDequantizedWithinHalfAnE4m3Step(Tensor deq, Tensor orig, float[] scales) {
        int rows = (int) deq.dim(0);
        int cols = (int) deq.dim(1);
        for (int r = 0; r < rows; r++) {
            for (int c = 0; c < cols; c++) {
                float d = deq.getFloat((long) r * cols + c);
                float o = orig.getFloat((long) r * cols + c);
                double bound = Math.max(Math.abs(o) * 0x1p-4, scales[r] * 0x1p-10) * 1.0001;
                assertThat((double) Math.abs(d - o)).as("weight [%d][%d]: %s vs %s", r, c, d, o).isLessThanOrEqualTo(bound);
            }
        }
    }

    @Test
    void llama4Fp8CheckpointHasTheLayoutOfMetasRelease() throws IOException {
        Path dir = tmp.resolve("maverick-like");
        ModelGenerator.generate(spec(Architecture.LLAMA4).withFp8Experts(true), dir);
        JsonObject json = JsonParser.parseString(Files.readString(dir.resolve("config.json"))).getAsJsonObject();
        assertThat(json.getAsJsonArray("architectures").get(0).getAsString()).isEqualTo("Llama4ForConditionalGeneration");
        assertThat(json.getAsJsonObject("text_config").get("model_type").getAsString()).isEqualTo("llama4_text");
        JsonObject q = json.getAsJsonObject("quantization_config");
        assertThat(q.get("quant_method").getAsString()).isEqualTo("compressed-tensors");
        assertThat(q.get("format").getAsString()).isEqualTo("float-quantized");
        JsonObject weights = q.getAsJsonObject("config_groups").getAsJsonObject("group_0").getAsJsonObject("weights");
        assertThat(weights.get("strategy").getAsString()).isEqualTo("channel");
        assertThat(weights.get("num_bits").getAsInt()).isEqualTo(8);
        List<String> ignore = new ArrayList<>();
        q.getAsJsonArray("ignore").forEach(e -> ignore.add(e.getAsString()));
        assertThat(ignore).contains("language_model.lm_head", "language_model.model.layers.1.feed_forward.router",
                "language_model.model.layers.1.feed_forward.shared_expert.down_proj",
                "language_model.model.layers.0.self_attn.q_proj", "language_model.model.layers.0.feed_forward.gate_proj");
        assertThat(ignore).noneMatch(m -> m.contains("experts."));
        try (Checkpoint c = Checkpoint.open(dir)) {
            String e = "language_model.model.layers.1.feed_forward.experts.";
            assertThat(c.tensor(e + "3.gate_proj.weight").dtype()).isEqualTo(DType.FP8_E4M3);
            assertThat(c.shapeOf(e + "3.gate_proj.weight")).containsExactly(96, 64);
            assertThat(c.tensor(e + "3.gate_proj.weight_scale").dtype()).isEqualTo(DType.BF16);
            assertThat(c.shapeOf(e + "3.gate_proj.weight_scale")).containsExactly(96, 1);
            assertThat(c.shapeOf(e + "3.down_proj.weight")).containsExactly(64, 96);
            assertThat(c.shapeOf(e + "3.down_proj.weight_scale")).containsExactly(64, 1);
            assertThat(c.contains(e + "gate_up_proj")).isFalse();
            assertThat(c.tensor("language_model.model.layers.1.feed_forward.shared_expert.gate_proj.weight").dtype())
                    .isEqualTo(DType.BF16);
            assertThat(c.contains("language_model.lm_head.weight")).isTrue();
            long fp8Tensors = c.tensorNames().stream().filter(n -> c.tensor(n).dtype() == DType.FP8_E4M3).count();
            assertThat(fp8Tensors).isEqualTo(3 * 8); // one MoE layer of 8 experts
        }
    }

    @Test
    void referenceBlockOnFp8ExpertsMatchesTheBf16ModelWithinFp8PrecisionAndChoosesTheSameExperts() throws IOException {
        Path fp8Dir = tmp.resolve("fp8");
        Path bf16Dir = tmp.resolve("bf16");
        ModelGenerator.generate(spec(Architecture.LLAMA4).withFp8Experts(true), fp8Dir);
        ModelGenerator.generate(spec(Architecture.LLAMA4), bf16Dir);
        try (ReferenceMoeBlock fp8 = ReferenceMoeBlock.open(fp8Dir);
                ReferenceMoeBlock deq = ReferenceMoeBlock.openDequantized(fp8Dir);
                ReferenceMoeBlock bf16 = ReferenceMoeBlock.open(bf16Dir)) {
            FloatMatrix x = new FloatMatrix(24, 64, gaussian(24 * 64, 3));
            ReferenceMoeBlock.Result q = fp8.forward(1, x);
            ReferenceMoeBlock.Result d = deq.forward(1, x);
            ReferenceMoeBlock.Result o = bf16.forward(1, x);
            assertThat(q.gate().experts()).containsExactly(o.gate().experts());
            assertThat(relativeError(q.output().data(), d.output().data())).isLessThan(1e-5);
            assertThat(relativeError(q.output().data(), o.output().data())).isLessThan(0.05).isGreaterThan(1e-4);
        }
    }

    @Test
    void fusedFbgemmLayoutIsReadWithItsExpertScales() throws IOException {
        // transformers' FbgemmFp8Llama4TextExperts: gate_up_proj [E, H, 2I] with gate_up_proj_scale [E, 1, 2I],
        // down_proj [E, I, H] with down_proj_scale [E, H, 1].
        Path dir = tmp.resolve("fbgemm");
        Path plain = tmp.resolve("plain");
        ModelConfig base = ModelGenerator.generate(new Spec(Architecture.LLAMA4, 1, 16, 8, 2, 0, 3, DType.F32, 1), plain);
        int e = 2, h = 16, inter = 8;
        float[] gateUpScale = new float[e * 2 * inter];
        float[] downScale = new float[e * h];
        for (int i = 0; i < gateUpScale.length; i++) {
            gateUpScale[i] = 0.5f + i * 0.25f;
        }
        for (int i = 0; i < downScale.length; i++) {
            downScale[i] = 2f - i * 0.03125f;
        }
        try (Checkpoint c = Checkpoint.open(plain); Arena arena = Arena.ofConfined()) {
            SafetensorsWriter writer = new SafetensorsWriter();
            for (String name : c.tensorNames()) {
                if (!name.contains("experts.")) {
                    writer.put(name, c.tensor(name));
                }
            }
            float[] gateUp = gaussian(e * h * 2 * inter, 9);
            float[] down = gaussian(e * inter * h, 10);
            writer.put("model.layers.0.feed_forward.experts.gate_up_proj", Tensor.of(arena, DType.FP8_E4M3, new long[] {e, h, 2 * inter}, gateUp));
            writer.put("model.layers.0.feed_forward.experts.gate_up_proj_scale", Tensor.of(arena, DType.F32, new long[] {e, 1, 2 * inter}, gateUpScale));
            writer.put("model.layers.0.feed_forward.experts.down_proj", Tensor.of(arena, DType.FP8_E4M3, new long[] {e, inter, h}, down));
            writer.put("model.layers.0.feed_forward.experts.down_proj_scale", Tensor.of(arena, DType.F32, new long[] {e, h, 1}, downScale));
            Files.createDirectories(dir);
            writer.write(dir.resolve("model.safetensors"));
        }
        try (Checkpoint c = Checkpoint.open(dir); Arena arena = Arena.ofConfined()) {
            Tensor storedGateUp = c.tensor("model.layers.0.feed_forward.experts.gate_up_proj");
            Tensor storedDown = c.tensor("model.layers.0.feed_forward.experts.down_proj");
            ExpertWeights w = new CheckpointLayout(base).expert(c, arena, 0, 1).dequantized(arena);
            for (int i = 0; i < inter; i++) {
                for (int k = 0; k < h; k++) {
                    // gate[i][k] = gate_up_proj[1][k][i] x scale[1][0][i]; up takes columns I.. and their scales
                    assertThat(w.gate().getFloat((long) i * h + k))
                            .isEqualTo(storedGateUp.getFloat((long) (h + k) * 2 * inter + i) * gateUpScale[2 * inter + i]);
                    assertThat(w.up().getFloat((long) i * h + k))
                            .isEqualTo(storedGateUp.getFloat((long) (h + k) * 2 * inter + inter + i) * gateUpScale[3 * inter + i]);
                    // down[k][i] = down_proj[1][i][k] x scale[1][k]
                    assertThat(w.down().getFloat((long) k * inter + i))
                            .isEqualTo(storedDown.getFloat((long) (inter + i) * h + k) * downScale[h + k]);
                }
            }
        }
    }

    @Test
    void missingOrBlockWiseScalesFailNamingTheTensor() throws IOException {
        Path src = tmp.resolve("fp8");
        ModelConfig config = ModelGenerator.generate(spec(Architecture.MIXTRAL).withFp8Experts(true), src);
        String weight = "model.layers.0.block_sparse_moe.experts.2.w3.weight";
        for (String replacement : new String[] {null, "_scale_inv"}) {
            Path dir = tmp.resolve("broken" + replacement);
            try (Checkpoint c = Checkpoint.open(src)) {
                SafetensorsWriter writer = new SafetensorsWriter();
                for (String name : c.tensorNames()) {
                    if (name.equals(weight + "_scale")) {
                        if (replacement != null) {
                            writer.put(weight + replacement, c.tensor(name));
                        }
                    } else {
                        writer.put(name, c.tensor(name));
                    }
                }
                Files.createDirectories(dir);
                writer.write(dir.resolve("model.safetensors"));
            }
            try (Checkpoint c = Checkpoint.open(dir); Arena arena = Arena.ofConfined()) {
                CheckpointLayout layout = new CheckpointLayout(config);
                assertThat(layout.expert(c, arena, 0, 1).dtype()).isEqualTo(DType.FP8_E4M3);
                assertThatThrownBy(() -> layout.expert(c, arena, 0, 2))
                        .isInstanceOf(IllegalArgumentException.class)
                        .hasMessageContaining(weight)
                        .hasMessageContaining(replacement == null ? "has no" : "block-wise");
            }
        }
    }

    @Test
    void fp8OutsideTheRoutedExpertsFailsNamingTheTensorRatherThanRunningUnscaled() throws IOException {
        Path src = tmp.resolve("fp8");
        ModelGenerator.generate(spec(Architecture.MIXTRAL).withFp8Experts(true), src);
        Path dir = tmp.resolve("fp8-attention");
        String q = "model.layers.1.self_attn.q_proj.weight";
        try (Checkpoint c = Checkpoint.open(src); Arena arena = Arena.ofConfined()) {
            SafetensorsWriter writer = new SafetensorsWriter();
            for (String name : c.tensorNames()) {
                Tensor t = c.tensor(name);
                writer.put(name, name.equals(q) ? Tensor.of(arena, DType.FP8_E4M3, t.shape(), t.toFloatArray()) : t);
            }
            Files.createDirectories(dir);
            writer.write(dir.resolve("model.safetensors"));
        }
        java.nio.file.Files.copy(src.resolve("config.json"), dir.resolve("config.json"));
        java.nio.file.Files.copy(src.resolve("tokenizer.json"), dir.resolve("tokenizer.json"));
        assertThatThrownBy(() -> dev.moecluster.core.runner.DecoderModel.open(dir).close())
                .hasMessageContaining(q)
                .hasMessageContaining("only routed experts may be FP8");
    }

    @Test
    void expertDtypeReadsTheQuantizationConfigsFp8Forms() {
        JsonObject base = JsonParser.parseString("""
                {"architectures": ["MixtralForCausalLM"], "torch_dtype": "bfloat16", "hidden_size": 64,
                 "num_hidden_layers": 1, "num_local_experts": 4, "num_experts_per_tok": 2, "intermediate_size": 32}
                """).getAsJsonObject();
        assertThat(ModelConfig.parse(base, "m").expertDtype()).isEqualTo(DType.BF16);
        JsonObject fbgemm = base.deepCopy();
        fbgemm.add("quantization_config", JsonParser.parseString("{\"quant_method\": \"fbgemm_fp8\"}"));
        assertThat(ModelConfig.parse(fbgemm, "m").expertDtype()).isEqualTo(DType.FP8_E4M3);
        JsonObject int8 = base.deepCopy();
        int8.add("quantization_config", JsonParser.parseString("""
                {"quant_method": "compressed-tensors", "config_groups": {"g": {"weights": {"num_bits": 8, "type": "int"}}}}
                """));
        assertThat(ModelConfig.parse(int8, "m").expertDtype()).isEqualTo(DType.BF16);
    }
}
