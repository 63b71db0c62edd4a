package dev.moecluster.coordinator;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.assertj.core.api.Assertions.within;
import static org.assertj.core.data.Percentage.withPercentage;

import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import dev.moecluster.core.model.ModelConfig;
import dev.moecluster.core.tensor.DType;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.List;
import java.util.Optional;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class CapacityPlannerTest {
    /**
     * A small Mixtral: hidden 64, 2 layers (both MoE), 4 experts of FFN 128, top-2, 4 heads of 16
     * with 2 KV heads, vocab 100, bf16. Counted by hand:
     * <pre>
     * one expert      3 × 64 × 128                        =  24,576 params = 49,152 bytes (bf16)
     * routed experts  2 layers × 4 × 24,576               = 196,608
     * attention       2 × (q 64·64 + k 64·32 + v 64·32 + o 64·64 = 12,288)  = 24,576
     * routers         2 × 4 × 64                          =     512
     * norms           2 × 2 × 64 + 64 (final)             =     320
     * embeddings      100 × 64                            =   6,400, and the LM head the same
     * dense           24,576 + 512 + 320 + 6,400 + 6,400  =  38,208
     * total           38,208 + 196,608                    = 234,816
     * active          38,208 + 2 layers × 2 × 24,576      = 136,512
     * </pre>
     */
    static final String SMALL_MIXTRAL = """
            {"architectures": ["MixtralForCausalLM"], "hidden_size": 64, "intermediate_size": 128,
             "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
             "num_local_experts": 4, "num_experts_per_tok": 2, "vocab_size": 100, "torch_dtype": "bfloat16"}
            """;
    private static final long SMALL_EXPERT_BYTES = 49_152;

    @TempDir
    Path tmp;

    @Test
    void countsSmallMixtralParametersByHand() {
        ModelFootprint m = ModelFootprint.of(parse(SMALL_MIXTRAL));

        assertThat(m.paramsPerExpert()).isEqualTo(24_576);
        assertThat(m.totalExperts()).isEqualTo(8);
        assertThat(m.routedExpertParams()).isEqualTo(196_608);
        assertThat(m.dense()).isEqualTo(new ModelFootprint.DenseParameters(6_400, 6_400, 24_576, 0, 0, 512, 320));
        assertThat(m.dense().total()).isEqualTo(38_208);
        assertThat(m.totalParams()).isEqualTo(234_816);
        assertThat(m.activeExpertParams()).isEqualTo(98_304);
        assertThat(m.activeParams()).isEqualTo(136_512);
    }

    @Test
    void bytesPerExpertFollowTheDtype() {
        ModelFootprint m = ModelFootprint.of(parse(SMALL_MIXTRAL));

        assertThat(m.bytesPerExpert(DType.BF16)).isEqualTo(49_152);
        assertThat(m.bytesPerExpert(DType.F32)).isEqualTo(98_304);
        // fp8: one byte a weight, plus an f32 scale per row: gate 128 + up 128 + down 64 rows
        assertThat(m.bytesPerExpert(DType.FP8_E4M3)).isEqualTo(24_576 + 4 * (128 + 128 + 64));
        assertThat(m.denseBytes(DType.BF16)).isEqualTo(76_416);
    }

    @Test
    void sizesWorkersForSmallMixtralByHand() {
        // 200,000 bytes less the 10% reserve = 180,000 usable; 180,000 / 49,152 = 3 experts (147,456 bytes)
        // 8 experts / 3 per worker → 3 workers holding 3, 3 and 2; 9 slots − 8 = 1 redundant copy
        CapacityPlan plan = CapacityPlanner.plan(parse(SMALL_MIXTRAL), CapacityRequest.of(200_000));

        assertThat(plan.expertDtype()).isEqualTo(DType.BF16);
        assertThat(plan.bytesPerExpert()).isEqualTo(SMALL_EXPERT_BYTES);
        assertThat(plan.routedExpertBytes()).isEqualTo(8 * SMALL_EXPERT_BYTES);
        assertThat(plan.denseBytes()).isEqualTo(2 * 38_208);
        assertThat(plan.request().usableBytes()).isEqualTo(180_000);
        assertThat(plan.slotsPerWorker()).isEqualTo(3);
        assertThat(plan.workers()).isEqualTo(3);
        assertThat(plan.minExpertsPerWorker()).isEqualTo(2);
        assertThat(plan.maxExpertsPerWorker()).isEqualTo(3);
        assertThat(plan.maxExpertBytesPerWorker()).isEqualTo(147_456);
        assertThat(plan.minFreeBytesPerWorker()).isEqualTo(180_000 - 147_456);
        assertThat(plan.maxFreeBytesPerWorker()).isEqualTo(180_000 - 98_304);
        assertThat(plan.redundantCopies()).isEqualTo(1);
    }

    @Test
    void exactFitNeedsNoExtraWorkerAndOneByteLessDoes() {
        ModelConfig config = parse(SMALL_MIXTRAL);
        // 196,608 bytes = exactly 4 experts: 8 experts on 2 full workers, nothing spare
        CapacityPlan exact = CapacityPlanner.plan(config, CapacityRequest.of(4 * SMALL_EXPERT_BYTES).withReserveFraction(0));
        assertThat(exact.slotsPerWorker()).isEqualTo(4);
        assertThat(exact.workers()).isEqualTo(2);
        assertThat(exact.redundantCopies()).isZero();
        assertThat(exact.minFreeBytesPerWorker()).isZero();

        // one byte less holds 3 experts: ceil(8 / 3) = 3 workers
        CapacityPlan under = CapacityPlanner.plan(config,
                CapacityRequest.of(4 * SMALL_EXPERT_BYTES - 1).withReserveFraction(0));
        assertThat(under.slotsPerWorker()).isEqualTo(3);
        assertThat(under.workers()).isEqualTo(3);
    }

    @Test
    void replicasMultiplyTheCopiesToPlace() {
        // 2 × 8 = 16 copies at 3 per worker → ceil(16 / 3) = 6 workers, 18 − 16 = 2 spare slots
        CapacityPlan plan = CapacityPlanner.plan(parse(SMALL_MIXTRAL), CapacityRequest.of(200_000).withMinReplicas(2));

        assertThat(plan.expertCopies()).isEqualTo(16);
        assertThat(plan.workers()).isEqualTo(6);
        assertThat(plan.redundantCopies()).isEqualTo(2);
    }

    @Test
    void replicasSetTheWorkerCountWhenMemoryIsPlenty() {
        // 1 GiB holds all 8 experts, but 3 copies of each must sit on 3 distinct workers
        CapacityPlan plan = CapacityPlanner.plan(parse(SMALL_MIXTRAL), CapacityRequest.of(1L << 30).withMinReplicas(3));

        assertThat(plan.workers()).isEqualTo(3);
        assertThat(plan.maxExpertsPerWorker()).isEqualTo(8);
        assertThat(plan.notes()).anyMatch(n -> n.contains("set by the 3 replicas"));
    }

    @Test
    void placementPlannerCanPlaceThePlannedWorkersButNotOneFewer() {
        ModelConfig config = parse(SMALL_MIXTRAL);
        CapacityPlan plan = CapacityPlanner.plan(config, CapacityRequest.of(200_000).withMinReplicas(2));
        PlacementPlanner planner = new PlacementPlanner(PlacementPolicy.defaults().withMinReplicas(2));

        List<WorkerCapacity> workers = plan.workerCapacities();
        PlacementPlan placed = planner.plan(plan.shape(), workers, ExpertLoad.none());
        PlacementChecks.assertValid(placed, plan.shape(), workers, 2);

        assertThatThrownBy(() -> planner.plan(plan.shape(), workers.subList(0, plan.workers() - 1), ExpertLoad.none()))
                .isInstanceOf(InfeasiblePlacementException.class);
    }

    @Test
    void fp8ExpertsAreSmallerThanTheCheckpointAndSaidToBeAWhatIf() {
        CapacityPlan plan = CapacityPlanner.plan(parse(SMALL_MIXTRAL),
                CapacityRequest.of(200_000).withExpertDtype(DType.FP8_E4M3));

        // 180,000 / 25,856 = 6 experts per worker → ceil(8 / 6) = 2 workers
        assertThat(plan.bytesPerExpert()).isEqualTo(25_856);
        assertThat(plan.slotsPerWorker()).isEqualTo(6);
        assertThat(plan.workers()).isEqualTo(2);
        assertThat(plan.denseDtype()).isEqualTo(DType.BF16);
        assertThat(plan.notes()).anyMatch(n -> n.contains("what-if"));
    }

    @Test
    void scoutExampleMatchesPublishedParameterCounts() throws IOException {
        CapacityPlan plan = CapacityPlanner.plan(example("llama4-scout"), CapacityRequest.of(MemorySize.parse("80GiB").bytes()));
        ModelFootprint m = plan.model();

        // 48 MoE layers × 16 experts × 3·5120·8192 (125,829,120) = 96,636,764,160 routed;
        // dense: attention 48 × 62,914,560, shared experts 48 × 125,829,120, routers 48 × 16·5120,
        // norms 48 × 2·5120 + 5120, embeddings and LM head 202,048 × 5120 each = 11,133,096,960
        assertThat(m.moeLayers()).isEqualTo(48);
        assertThat(m.routedExpertParams()).isEqualTo(96_636_764_160L);
        assertThat(m.dense().total()).isEqualTo(11_133_096_960L);
        assertThat(m.totalParams()).isEqualTo(107_769_861_120L);
        assertThat(m.activeParams()).isEqualTo(17_172_894_720L);
        // Meta: 109B total (the vision encoder, not counted here, is the rest), 17B active
        assertThat((double) m.totalParams()).isCloseTo(109e9, withPercentage(3));
        assertThat((double) m.activeParams()).isCloseTo(17e9, withPercentage(3));

        // 240 MiB per bf16 expert; 72 GiB usable holds 307; 768 experts → 3 workers of 256
        assertThat(plan.bytesPerExpert()).isEqualTo(240L << 20);
        assertThat(plan.slotsPerWorker()).isEqualTo(307);
        assertThat(plan.workers()).isEqualTo(3);
        assertThat(plan.maxExpertsPerWorker()).isEqualTo(256);
        assertThat(plan.redundantCopies()).isEqualTo(3 * 307 - 768);
        assertThat(plan.notes()).anyMatch(n -> n.contains("vision encoder"));
    }

    @Test
    void maverickExampleMatchesPublishedParameterCounts() throws IOException {
        CapacityPlan plan = CapacityPlanner.plan(example("llama4-maverick"), CapacityRequest.of(MemorySize.parse("80GiB").bytes()));
        ModelFootprint m = plan.model();

        // interleave_moe_layer_step 2: layers 1, 3, …, 47 are MoE (24), the other 24 dense FFN 16384
        // routed 24 × 128 × 125,829,120 = 386,547,056,640; dense FFN 24 × 3·5120·16384 = 6,039,797,760
        assertThat(m.moeLayers()).isEqualTo(24);
        assertThat(m.routedExpertParams()).isEqualTo(386_547_056_640L);
        assertThat(m.dense().denseFfn()).isEqualTo(6_039_797_760L);
        assertThat(m.totalParams()).isEqualTo(400_711_848_960L);
        assertThat(m.activeParams()).isEqualTo(17_184_691_200L);
        assertThat((double) m.totalParams()).isCloseTo(400e9, withPercentage(3));
        assertThat((double) m.activeParams()).isCloseTo(17e9, withPercentage(3));

        // 3072 experts at 307 per worker: 10 workers hold 3070, so 11
        assertThat(plan.workers()).isEqualTo(11);
        assertThat(plan.minExpertsPerWorker()).isEqualTo(279);
        assertThat(plan.maxExpertsPerWorker()).isEqualTo(280);
        assertThat(plan.redundantCopies()).isEqualTo(11 * 307 - 3072);

        PlacementPlanner planner = new PlacementPlanner(PlacementPolicy.defaults());
        List<WorkerCapacity> workers = plan.workerCapacities();
        PlacementChecks.assertValid(planner.plan(plan.shape(), workers, ExpertLoad.none()), plan.shape(), workers, 1);
    }

    @Test
    void maverickFp8ReleaseIsPlannedAtItsStoredFp8SizeWithoutAsking() throws IOException {
        // Meta's FP8 release is the bf16 config plus a compressed-tensors quantization_config beside text_config.
        Path dir = Path.of("").toAbsolutePath();
        while (!Files.isDirectory(dir.resolve("deploy/examples"))) {
            dir = dir.getParent();
        }
        JsonObject json = JsonParser.parseString(
                Files.readString(dir.resolve("deploy/examples/llama4-maverick/config.json"))).getAsJsonObject();
        json.add("quantization_config", JsonParser.parseString("""
                {"quant_method": "compressed-tensors", "format": "float-quantized",
                 "config_groups": {"group_0": {"targets": ["Linear"],
                   "weights": {"num_bits": 8, "type": "float", "strategy": "channel", "dynamic": false}}}}"""));
        CapacityPlan plan = CapacityPlanner.plan(ModelConfig.parse(json, "maverick-fp8"),
                CapacityRequest.of(MemorySize.parse("80GiB").bytes()));

        // 3·5120·8192 codes + 4·(2·8192 + 5120) scale bytes = 125,915,136 per expert; 72 GiB holds 613;
        // 3072 experts → 6 workers (5 hold only 3065)
        assertThat(plan.expertDtype()).isEqualTo(DType.FP8_E4M3);
        assertThat(plan.denseDtype()).isEqualTo(DType.BF16);
        assertThat(plan.bytesPerExpert()).isEqualTo(125_915_136L);
        assertThat(plan.slotsPerWorker()).isEqualTo(613);
        assertThat(plan.workers()).isEqualTo(6);
        assertThat(plan.notes()).noneMatch(n -> n.contains("what-if"));
    }

    @Test
    void behemothScaleExampleComesToTwoTrillion() throws IOException {
        ModelConfig config = example("behemoth-scale");
        CapacityPlan at80 = CapacityPlanner.plan(config, CapacityRequest.of(MemorySize.parse("80GiB").bytes()));
        CapacityPlan at141 = CapacityPlanner.plan(config, CapacityRequest.of(MemorySize.parse("141GiB").bytes()));
        ModelFootprint m = at80.model();

        // see deploy/examples/behemoth-scale/README.md: 1,991,729,233,920 total, 288,506,265,600 active
        assertThat(m.totalParams()).isEqualTo(1_991_729_233_920L);
        assertThat(m.activeParams()).isEqualTo(288_506_265_600L);
        assertThat((double) m.totalParams()).isCloseTo(2e12, withPercentage(1));
        assertThat((double) m.activeParams()).isCloseTo(288e9, withPercentage(1));
        assertThat(at80.bytesPerExpert()).isEqualTo(3L * 16384 * 24064 * 2); // 2.2 GiB

        // 72 GiB / 2.203 GiB = 32 per worker → 1536 / 32 = 48 workers; 126.9 GiB → 57 → ceil(1536 / 57) = 27
        assertThat(at80.workers()).isEqualTo(48);
        assertThat(at141.slotsPerWorker()).isEqualTo(57);
        assertThat(at141.workers()).isEqualTo(27);
        assertThat(at80.routers().denseBytes()).isGreaterThan(at80.request().usableBytes());
        assertThat(at80.notes()).first().asString().startsWith("Hypothetical Behemoth-scale config");
        assertThat(at80.notes()).anyMatch(n -> n.contains("little room for hot-expert replicas"));
    }

    @Test
    void otherArchitecturesMatchTheirPublishedParameterCounts() {
        // Mixtral-8x7B: 46.7B total, 12.9B active
        ModelFootprint mixtral = ModelFootprint.of(parse("""
                {"architectures": ["MixtralForCausalLM"], "hidden_size": 4096, "intermediate_size": 14336,
                 "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8, "num_local_experts": 8,
                 "num_experts_per_tok": 2, "vocab_size": 32000, "tie_word_embeddings": false, "torch_dtype": "bfloat16"}
                """));
        assertThat(mixtral.totalParams() / 1e9).isCloseTo(46.7, within(0.5));
        assertThat(mixtral.activeParams() / 1e9).isCloseTo(12.9, within(0.2));

        // Qwen3-30B-A3B: 30.5B total, 3.3B active
        ModelFootprint qwen3 = ModelFootprint.of(parse("""
                {"architectures": ["Qwen3MoeForCausalLM"], "hidden_size": 2048, "intermediate_size": 6144,
                 "moe_intermediate_size": 768, "num_hidden_layers": 48, "num_attention_heads": 32,
                 "num_key_value_heads": 4, "head_dim": 128, "num_experts": 128, "num_experts_per_tok": 8,
                 "decoder_sparse_step": 1, "mlp_only_layers": [], "norm_topk_prob": true, "vocab_size": 151936,
                 "tie_word_embeddings": false, "torch_dtype": "bfloat16"}
                """));
        assertThat(qwen3.totalParams() / 1e9).isCloseTo(30.5, within(0.3));
        assertThat(qwen3.activeParams() / 1e9).isCloseTo(3.3, within(0.1));

        // Qwen1.5-MoE-A2.7B (Qwen2-MoE, shared expert with a sigmoid gate): 14.3B total, 2.7B active
        ModelFootprint qwen2 = ModelFootprint.of(parse("""
                {"architectures": ["Qwen2MoeForCausalLM"], "hidden_size": 2048, "intermediate_size": 5632,
                 "moe_intermediate_size": 1408, "shared_expert_intermediate_size": 5632, "num_hidden_layers": 24,
                 "num_attention_heads": 16, "num_key_value_heads": 16, "num_experts": 60, "num_experts_per_tok": 4,
                 "vocab_size": 151936, "tie_word_embeddings": false, "torch_dtype": "bfloat16"}
                """));
        assertThat(qwen2.totalParams() / 1e9).isCloseTo(14.3, within(0.2));
        assertThat(qwen2.activeParams() / 1e9).isCloseTo(2.7, within(0.1));

        // DeepSeek-V3 (MLA, 3 dense layers, 1 shared expert): 671B total, 37B active, MTP layer excluded
        ModelConfig v3 = parse("""
                {"architectures": ["DeepseekV3ForCausalLM"], "hidden_size": 7168, "intermediate_size": 18432,
                 "moe_intermediate_size": 2048, "num_hidden_layers": 61, "first_k_dense_replace": 3,
                 "n_routed_experts": 256, "n_shared_experts": 1, "num_experts_per_tok": 8, "n_group": 8,
                 "topk_group": 4, "num_attention_heads": 128, "num_key_value_heads": 128, "q_lora_rank": 1536,
                 "kv_lora_rank": 512, "qk_nope_head_dim": 128, "qk_rope_head_dim": 64, "v_head_dim": 128,
                 "vocab_size": 129280, "num_nextn_predict_layers": 1, "tie_word_embeddings": false,
                 "torch_dtype": "bfloat16"}
                """);
        ModelFootprint deepseek = ModelFootprint.of(v3);
        assertThat(deepseek.totalParams() / 1e9).isCloseTo(671, within(3.0));
        assertThat(deepseek.activeParams() / 1e9).isCloseTo(37, within(1.0));
        assertThat(CapacityPlanner.plan(v3, CapacityRequest.of(80L << 30)).notes())
                .anyMatch(n -> n.contains("multi-token-prediction"));
    }

    @Test
    void readsAConfigFileOrTheDirectoryHoldingIt() throws IOException {
        Path dir = Files.createDirectories(tmp.resolve("tiny-mixtral"));
        Files.writeString(dir.resolve("config.json"), SMALL_MIXTRAL);

        assertThat(CapacityPlanner.readConfig(dir).name()).isEqualTo("tiny-mixtral");
        assertThat(CapacityPlanner.readConfig(dir.resolve("config.json")).name()).isEqualTo("tiny-mixtral");
        assertThat(CapacityPlanner.readConfig(dir).numExperts()).isEqualTo(4);
    }

    @Test
    void missingConfigIsAClearError() throws IOException {
        assertThatThrownBy(() -> CapacityPlanner.readConfig(tmp.resolve("nowhere")))
                .isInstanceOf(IOException.class).isNotInstanceOf(NoSuchFileException.class)
                .hasMessageContaining("no model config at").hasMessageContaining("nowhere");
        Path empty = Files.createDirectories(tmp.resolve("empty"));
        assertThatThrownBy(() -> CapacityPlanner.readConfig(empty))
                .isInstanceOf(IOException.class).hasMessageContaining("no config.json in");
    }

    @Test
    void malformedOrIncompleteConfigIsAClearError() throws IOException {
        Path broken = Files.writeString(tmp.resolve("broken.json"), "{\"architectures\": [");
        assertThatThrownBy(() -> CapacityPlanner.readConfig(broken))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("is not valid JSON");
        Path array = Files.writeString(tmp.resolve("array.json"), "[1, 2]");
        assertThatThrownBy(() -> CapacityPlanner.readConfig(array))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("is not a JSON object");

        JsonObject noVocab = JsonParser.parseString(SMALL_MIXTRAL).getAsJsonObject();
        noVocab.remove("vocab_size");
        assertThatThrownBy(() -> CapacityPlanner.plan(ModelConfig.parse(noVocab, "m"), CapacityRequest.of(1L << 30)))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("missing vocab_size");
    }

    @Test
    void unsupportedArchitectureIsAClearError() throws IOException {
        Path dense = Files.writeString(tmp.resolve("config.json"), """
                {"architectures": ["LlamaForCausalLM"], "hidden_size": 4096, "num_hidden_layers": 32}
                """);
        assertThatThrownBy(() -> CapacityPlanner.readConfig(dense))
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("unsupported architecture LlamaForCausalLM")
                .hasMessageContaining("Mixtral");
    }

    @Test
    void modelWithoutMoeLayersIsAClearError() {
        ModelConfig allDense = parse("""
                {"architectures": ["Qwen3MoeForCausalLM"], "hidden_size": 64, "intermediate_size": 128,
                 "moe_intermediate_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "num_experts": 4,
                 "num_experts_per_tok": 2, "mlp_only_layers": [0, 1], "vocab_size": 100}
                """);
        assertThatThrownBy(() -> CapacityPlanner.plan(allDense, CapacityRequest.of(1L << 30)))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("has no MoE layers");
    }

    @Test
    void acceleratorTooSmallForOneExpertSaysWhatWouldFit() {
        // 50,000 bytes less 10% = 45,000 < 49,152; 49,152 / 0.9 = 54,613.3 → at least 53.3 KiB
        assertThatThrownBy(() -> CapacityPlanner.plan(parse(SMALL_MIXTRAL), CapacityRequest.of(50_000)))
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("one expert of small takes 48.0 KiB at bf16")
                .hasMessageContaining("leaves only 43.9 KiB after the 10% reserve")
                .hasMessageContaining("at least 53.3 KiB");
    }

    @Test
    void requestHasRecordedDefaultsAndRejectsNonsense() {
        CapacityRequest r = CapacityRequest.of(80L << 30);
        assertThat(r.reserveFraction()).isEqualTo(0.10);
        assertThat(r.minReplicas()).isEqualTo(1);
        assertThat(r.expertDtype()).isEmpty();
        assertThat(r.usableBytes()).isEqualTo(72L << 30);

        assertThatThrownBy(() -> CapacityRequest.of(0)).hasMessageContaining("accelerator memory must be positive");
        assertThatThrownBy(() -> r.withReserveFraction(1)).hasMessageContaining("reserve fraction must be in [0, 1)");
        assertThatThrownBy(() -> r.withReserveFraction(-0.1)).hasMessageContaining("reserve fraction");
        assertThatThrownBy(() -> r.withReserveFraction(Double.NaN)).hasMessageContaining("reserve fraction");
        assertThatThrownBy(() -> r.withMinReplicas(0)).hasMessageContaining("replicas must be at least 1");
        assertThatThrownBy(() -> new CapacityRequest(1, 0.1, 1, null)).isInstanceOf(NullPointerException.class);
        assertThat(r.withExpertDtype(DType.FP8_E4M3).expertDtype()).isEqualTo(Optional.of(DType.FP8_E4M3));
    }

    @Test
    void jsonCarriesTheNumbersAsIntegers() {
        CapacityPlan plan = CapacityPlanner.plan(parse(SMALL_MIXTRAL), CapacityRequest.of(200_000));
        JsonObject json = JsonParser.parseString(plan.toJson()).getAsJsonObject();

        assertThat(json.getAsJsonObject("model").get("architecture").getAsString()).isEqualTo("mixtral");
        assertThat(json.getAsJsonObject("parameters").get("total").getAsLong()).isEqualTo(234_816);
        assertThat(json.getAsJsonObject("parameters").get("active").getAsLong()).isEqualTo(136_512);
        assertThat(json.getAsJsonObject("parameters").getAsJsonObject("dense").get("total").getAsLong()).isEqualTo(38_208);
        assertThat(json.getAsJsonObject("memory").get("expert_dtype").getAsString()).isEqualTo("bf16");
        assertThat(json.getAsJsonObject("memory").get("bytes_per_expert").getAsLong()).isEqualTo(SMALL_EXPERT_BYTES);
        JsonObject workers = json.getAsJsonObject("workers");
        assertThat(workers.get("count").getAsInt()).isEqualTo(3);
        assertThat(workers.get("expert_slots_per_worker").getAsLong()).isEqualTo(3);
        assertThat(workers.get("redundant_copies_that_fit").getAsLong()).isEqualTo(1);
        assertThat(workers.get("usable_bytes_per_worker").getAsLong()).isEqualTo(180_000);
        assertThat(json.getAsJsonArray("notes")).isNotEmpty();
    }

    private static ModelConfig parse(String json) {
        return ModelConfig.parse(JsonParser.parseString(json).getAsJsonObject(), "small");
    }

    static ModelConfig example(String name) throws IOException {
        Path dir = Path.of("").toAbsolutePath();
        while (dir != null && !Files.isDirectory(dir.resolve("deploy/examples"))) {
            dir = dir.getParent();
        }
        if (dir == null) {
            throw new IOException("deploy/examples not found above " + Path.of("").toAbsolutePath());
        }
        return CapacityPlanner.readConfig(dir.resolve("deploy/examples").resolve(name));
    }
}
