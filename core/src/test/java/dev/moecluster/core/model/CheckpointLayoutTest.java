package dev.moecluster.core.model;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import dev.moecluster.core.model.ModelGenerator.Spec;
import dev.moecluster.core.moe.ExpertWeights;
import dev.moecluster.core.moe.SharedExpert;
import dev.moecluster.core.tensor.DType;
import dev.moecluster.core.tensor.Tensor;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Optional;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

class CheckpointLayoutTest {

    @TempDir
    Path tmp;

    private static ModelConfig config(Architecture arch, String extra) {
        String base = switch (arch) {
            case MIXTRAL -> "\"num_local_experts\": 4, \"intermediate_size\": 16";
            case QWEN3_MOE, QWEN2_MOE -> "\"num_experts\": 4, \"moe_intermediate_size\": 16";
            case LLAMA4 -> "\"num_local_experts\": 4, \"intermediate_size\": 16";
            case DEEPSEEK_V3 -> "\"n_routed_experts\": 4, \"moe_intermediate_size\": 16, \"n_group\": 1, "
                    + "\"topk_group\": 1, \"first_k_dense_replace\": 0";
        };
        JsonObject j = JsonParser.parseString("{\"architectures\": [\"" + arch.hfName() + "\"], \"hidden_size\": 8, "
                + "\"num_hidden_layers\": 3, \"num_experts_per_tok\": 1, " + base + extra + "}").getAsJsonObject();
        return ModelConfig.parse(j, "x");
    }

    @Test
    void tensorNamesFollowEachArchitecturesPublishedLayout() {
        CheckpointLayout mixtral = new CheckpointLayout(config(Architecture.MIXTRAL, ""));
        assertThat(mixtral.gateWeight(2)).isEqualTo("model.layers.2.block_sparse_moe.gate.weight");
        assertThat(mixtral.expertTensorNames(2, 5)).containsExactly(
                "model.layers.2.block_sparse_moe.experts.5.w1.weight",
                "model.layers.2.block_sparse_moe.experts.5.w3.weight",
                "model.layers.2.block_sparse_moe.experts.5.w2.weight");
        assertThat(mixtral.scoreCorrectionBias(2)).isEmpty();

        for (Architecture qwen : new Architecture[] {Architecture.QWEN3_MOE, Architecture.QWEN2_MOE}) {
            CheckpointLayout q = new CheckpointLayout(config(qwen, ""));
            assertThat(q.gateWeight(0)).isEqualTo("model.layers.0.mlp.gate.weight");
            assertThat(q.expertTensorNames(0, 1)).containsExactly(
                    "model.layers.0.mlp.experts.1.gate_proj.weight",
                    "model.layers.0.mlp.experts.1.up_proj.weight",
                    "model.layers.0.mlp.experts.1.down_proj.weight");
            assertThat(q.scoreCorrectionBias(0)).isEmpty();
        }

        CheckpointLayout ds = new CheckpointLayout(config(Architecture.DEEPSEEK_V3, ""));
        assertThat(ds.gateWeight(1)).isEqualTo("model.layers.1.mlp.gate.weight");
        assertThat(ds.scoreCorrectionBias(1)).contains("model.layers.1.mlp.gate.e_score_correction_bias");
        assertThat(ds.expertTensorNames(1, 3)[2]).isEqualTo("model.layers.1.mlp.experts.3.down_proj.weight");

        CheckpointLayout llama = new CheckpointLayout(config(Architecture.LLAMA4, ""));
        assertThat(llama.gateWeight(1)).isEqualTo("model.layers.1.feed_forward.router.weight");
        assertThat(llama.fusedExpertTensorNames(1)).containsExactly(
                "model.layers.1.feed_forward.experts.gate_up_proj",
                "model.layers.1.feed_forward.experts.down_proj");
        // Meta's FP8 release stores Llama 4 experts one by one
        assertThat(llama.expertTensorNames(1, 0)).containsExactly(
                "model.layers.1.feed_forward.experts.0.gate_proj.weight",
                "model.layers.1.feed_forward.experts.0.up_proj.weight",
                "model.layers.1.feed_forward.experts.0.down_proj.weight");
        assertThat(llama.scoreCorrectionBias(1)).isEmpty();
    }

    @Test
    void llama4MultimodalNamesCarryTheLanguageModelPrefix() {
        JsonObject j = JsonParser.parseString("""
                {"architectures": ["Llama4ForConditionalGeneration"], "torch_dtype": "bfloat16",
                 "text_config": {"hidden_size": 8, "num_hidden_layers": 2, "num_local_experts": 4,
                   "num_experts_per_tok": 1, "intermediate_size": 16}}
                """).getAsJsonObject();
        CheckpointLayout l = new CheckpointLayout(ModelConfig.parse(j, "scout"));
        assertThat(l.gateWeight(0)).isEqualTo("language_model.model.layers.0.feed_forward.router.weight");
        assertThat(l.fusedExpertTensorNames(0)[0]).isEqualTo("language_model.model.layers.0.feed_forward.experts.gate_up_proj");
    }

    @ParameterizedTest
    @EnumSource(names = {"F32", "BF16"})
    void llama4FusedExpertsBecomeLinearLayoutWithTheStoredValues(DType dtype) throws IOException {
        Path dir = tmp.resolve("llama4");
        // 3 experts, hidden 16, intermediate 24: all dimensions distinct so a swapped axis cannot pass.
        Spec spec = Spec.tiny(Architecture.LLAMA4).withSize(2, 16, 24, 3).withDtype(dtype);
        ModelConfig config = ModelGenerator.generate(spec, dir);
        int h = 16, inter = 24;
        CheckpointLayout layout = new CheckpointLayout(config);
        try (Checkpoint c = Checkpoint.open(dir); Arena arena = Arena.ofConfined()) {
            Tensor gateUp = c.tensor("model.layers.1.feed_forward.experts.gate_up_proj"); // [E, H, 2I]
            Tensor down = c.tensor("model.layers.1.feed_forward.experts.down_proj"); // [E, I, H]
            assertThat(gateUp.shape()).containsExactly(3, h, 2 * inter);
            assertThat(down.shape()).containsExactly(3, inter, h);
            for (int e = 0; e < 3; e++) {
                ExpertWeights w = layout.expert(c, arena, 1, e);
                assertThat(w.gate().shape()).containsExactly(inter, h);
                assertThat(w.up().shape()).containsExactly(inter, h);
                assertThat(w.down().shape()).containsExactly(h, inter);
                assertThat(w.gate().dtype()).isEqualTo(dtype);
                assertThat(w.down().dtype()).isEqualTo(dtype);
                assertThat(w.hiddenSize()).isEqualTo(h);
                assertThat(w.intermediateSize()).isEqualTo(inter);
                for (int i = 0; i < inter; i++) {
                    for (int k = 0; k < h; k++) {
                        // gate = first I columns of gate_up_proj[e], up = the last I, both transposed.
                        long gu = ((long) e * h + k) * 2 * inter;
                        assertThat(w.gate().getFloat((long) i * h + k)).isEqualTo(gateUp.getFloat(gu + i));
                        assertThat(w.up().getFloat((long) i * h + k)).isEqualTo(gateUp.getFloat(gu + inter + i));
                        // down (Linear [H, I]) is down_proj[e] ([I, H]) transposed.
                        assertThat(w.down().getFloat((long) k * inter + i))
                                .isEqualTo(down.getFloat(((long) e * inter + i) * h + k));
                    }
                }
            }
        }
    }

    @ParameterizedTest
    @EnumSource(names = {"MIXTRAL", "QWEN3_MOE", "QWEN2_MOE"})
    void perExpertLayoutsAreReadInPlace(Architecture arch) throws IOException {
        Path dir = tmp.resolve(arch.cliName());
        ModelConfig config = ModelGenerator.generate(Spec.tiny(arch).withSize(1, 16, 8, 4), dir);
        CheckpointLayout layout = new CheckpointLayout(config);
        try (Checkpoint c = Checkpoint.open(dir); Arena arena = Arena.ofConfined()) {
            ExpertWeights w = layout.expert(c, arena, 0, 3);
            String[] names = layout.expertTensorNames(0, 3);
            assertThat(w.gate().toFloatArray()).containsExactly(c.tensor(names[0]).toFloatArray());
            assertThat(w.up().toFloatArray()).containsExactly(c.tensor(names[1]).toFloatArray());
            assertThat(w.down().toFloatArray()).containsExactly(c.tensor(names[2]).toFloatArray());
            // A view of the mapped file, not a copy.
            assertThat(w.gate().data().address()).isEqualTo(c.tensor(names[0]).data().address());
            assertThat(w.down().shape()).containsExactly(16, 8);
        }
    }

    @Test
    void expertRejectsDenseLayersAndOutOfRangeExperts() throws IOException {
        Path dir = tmp.resolve("l4");
        ModelConfig config = ModelGenerator.generate(Spec.tiny(Architecture.LLAMA4).withSize(2, 16, 8, 4), dir);
        CheckpointLayout layout = new CheckpointLayout(config);
        try (Checkpoint c = Checkpoint.open(dir); Arena arena = Arena.ofConfined()) {
            assertThatThrownBy(() -> layout.expert(c, arena, 0, 0))
                    .isInstanceOf(IllegalArgumentException.class)
                    .hasMessageContaining("layer 0 is not a MoE layer");
            assertThatThrownBy(() -> layout.expert(c, arena, 1, 4))
                    .isInstanceOf(IllegalArgumentException.class)
                    .hasMessageContaining("expert 4 out of range 0..3");
            assertThatThrownBy(() -> layout.expert(c, arena, 1, -1)).isInstanceOf(IllegalArgumentException.class);
        }
    }

    @Test
    void sharedExpertIsGatedOnlyForQwen2() throws IOException {
        for (Architecture arch : Architecture.values()) {
            if (arch == Architecture.DEEPSEEK_V3) {
                continue;
            }
            Path dir = tmp.resolve("s-" + arch.cliName());
            ModelConfig config = ModelGenerator.generate(Spec.tiny(arch).withSize(2, 16, 8, 4), dir);
            int layer = config.moeLayerList().getLast();
            try (Checkpoint c = Checkpoint.open(dir)) {
                Optional<SharedExpert> shared = new CheckpointLayout(config).sharedExpert(c, layer);
                switch (arch) {
                    case MIXTRAL, QWEN3_MOE -> assertThat(shared).as(arch.name()).isEmpty();
                    case QWEN2_MOE -> {
                        assertThat(shared).isPresent();
                        assertThat(shared.get().gate().shape()).containsExactly(1, 16);
                        assertThat(shared.get().ffn().intermediateSize()).isEqualTo(16); // 2 * I
                    }
                    case LLAMA4 -> {
                        assertThat(shared).isPresent();
                        assertThat(shared.get().gate()).isNull();
                        assertThat(shared.get().ffn().intermediateSize()).isEqualTo(8);
                    }
                    default -> throw new AssertionError();
                }
            }
        }
    }

    @Test
    void deepseekSharedExpertsAndBiasAreFoundUnderTheirNames() throws IOException {
        ModelConfig config = config(Architecture.DEEPSEEK_V3, ", \"n_shared_experts\": 1");
        CheckpointLayout layout = new CheckpointLayout(config);
        Path dir = tmp.resolve("ds");
        Files.createDirectories(dir);
        try (Arena arena = Arena.ofConfined()) {
            SafetensorsWriter w = new SafetensorsWriter();
            String p = "model.layers.0.mlp.";
            w.put(p + "gate.weight", Tensor.of(arena, DType.F32, new long[] {4, 8}, new float[32]));
            w.put(p + "gate.e_score_correction_bias", Tensor.of(arena, DType.F32, new long[] {4}, new float[] {1, 2, 3, 4}));
            w.put(p + "shared_experts.gate_proj.weight", Tensor.of(arena, DType.F32, new long[] {16, 8}, new float[128]));
            w.put(p + "shared_experts.up_proj.weight", Tensor.of(arena, DType.F32, new long[] {16, 8}, new float[128]));
            w.put(p + "shared_experts.down_proj.weight", Tensor.of(arena, DType.F32, new long[] {8, 16}, new float[128]));
            w.write(dir.resolve("model.safetensors"));
        }
        try (Checkpoint c = Checkpoint.open(dir)) {
            assertThat(c.tensor(layout.scoreCorrectionBias(0).orElseThrow()).toFloatArray()).containsExactly(1, 2, 3, 4);
            Optional<SharedExpert> shared = layout.sharedExpert(c, 0);
            assertThat(shared).isPresent();
            assertThat(shared.get().gate()).isNull();
            assertThat(shared.get().ffn().intermediateSize()).isEqualTo(16);
            // A layer without shared-expert tensors has none.
            assertThat(layout.sharedExpert(c, 1)).isEmpty();
        }
    }
}
