package dev.moecluster.coordinator;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.assertj.core.api.Assertions.within;

import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import dev.moecluster.core.model.ModelConfig;
import java.io.IOException;
import org.junit.jupiter.api.Test;

/** Routers sized from the attention shape; every expected figure is worked out here from the config. */
class RouterPlanTest {
    private static final long GIB = 1L << 30;

    private static ModelConfig small() {
        return ModelConfig.parse(JsonParser.parseString(CapacityPlannerTest.SMALL_MIXTRAL).getAsJsonObject(), "small");
    }

    @Test
    void smallMixtralRoutersByHand() {
        // 2 layers x 2 KV heads x head_dim 64/4 = 16 x 2 (K, V) x 2 bytes (bf16) = 256 bytes a token
        long perToken = 2 * 2 * 16 * 2 * 2;
        long perSequence = perToken * 120;
        long dense = 2 * 38_208; // CapacityPlannerTest's hand count, bf16
        RouterRequest r = RouterRequest.defaults().withConcurrency(4).withContextTokens(120)
                .withDevice(RouterRequest.Device.GPU).withBandwidths(1, 1);
        CapacityPlan plan = CapacityPlanner.plan(small(), CapacityRequest.of(200_000), r);
        RouterPlan p = plan.routers();

        assertThat(p.kvBytesPerToken()).isEqualTo(perToken);
        assertThat(p.kvBytesPerSequence()).isEqualTo(perSequence);
        assertThat(p.kvBytes()).isEqualTo(4 * perSequence);
        assertThat(p.denseBytes()).isEqualTo(dense);
        // 180,000 usable - 76,416 dense = 103,584: 3 sequences of 30,720 a router, so 4 need 2 routers of 2
        assertThat(p.memoryBytesPerRouter()).isEqualTo(180_000);
        assertThat(p.routers()).isEqualTo(2);
        assertThat(p.sequencesPerRouter()).isEqualTo(2);
        assertThat(p.bytesPerRouter()).isEqualTo(dense + 2 * perSequence);
        assertThat(plan.accelerators()).isEqualTo(3 + 2);

        // No windows: a step reads every position. 4 tokens each pick 2 of 4 experts: 4(1 - (1/2)^4) = 3.75
        // reached per layer, 2 layers of 49,152-byte experts, over 3 workers.
        assertThat(p.kvReadBytesPerSequence()).isEqualTo(perSequence);
        assertThat(p.routerStepBytes()).isEqualTo(dense + 2 * perSequence);
        assertThat(p.expertsTouchedPerLayer()).isCloseTo(3.75, within(1e-12));
        assertThat(p.expertBytesPerStep()).isEqualTo(Math.round(2 * 3.75 * 49_152));
        assertThat(p.workerStepBytes()).isEqualTo(Math.ceilDiv(Math.round(2 * 3.75 * 49_152), 3));
        assertThat(p.routerStepSeconds()).isCloseTo((dense + 2 * perSequence) / 1e9, within(1e-15));
        assertThat(p.routersSetTheSpeed()).isTrue();
        assertThat(p.stepsPerSecond()).isCloseTo(1e9 / (dense + 2 * perSequence), within(1e-6));
    }

    @Test
    void cpuRoutersTakeNoAcceleratorsAndOneHostIsSizedToFitUnlessItsMemoryIsGiven() {
        long perSequence = 256 * 120;
        long dense = 2 * 38_208;
        RouterRequest r = RouterRequest.defaults().withConcurrency(4).withContextTokens(120);
        CapacityPlan oneHost = CapacityPlanner.plan(small(), CapacityRequest.of(200_000), r);
        assertThat(oneHost.routers().routers()).isEqualTo(1);
        assertThat(oneHost.routers().memoryBytesPerRouter()).isZero();
        assertThat(oneHost.routers().bytesPerRouter()).isEqualTo(dense + 4 * perSequence);
        assertThat(oneHost.accelerators()).isEqualTo(oneHost.workers());

        // 150,000 bytes less the 10% reserve = 135,000; less the dense part 58,584: one sequence a host
        CapacityPlan hosts = CapacityPlanner.plan(small(), CapacityRequest.of(200_000), r.withHostBytes(150_000));
        assertThat(hosts.routers().memoryBytesPerRouter()).isEqualTo(135_000);
        assertThat(hosts.routers().routers()).isEqualTo(4);
        assertThat(hosts.accelerators()).isEqualTo(3);
    }

    @Test
    void aRouterThatCannotHoldOneSequenceIsSaidSo() {
        // 100,000 bytes: 90,000 usable - 76,416 dense = 13,584, less than one 30,720-byte sequence
        CapacityPlan plan = CapacityPlanner.plan(small(), CapacityRequest.of(100_000),
                RouterRequest.defaults().withConcurrency(4).withContextTokens(120).withDevice(RouterRequest.Device.GPU));
        assertThat(plan.routers().fits()).isFalse();
        assertThat(plan.routers().routers()).isZero();
        assertThat(plan.accelerators()).isEqualTo(plan.workers());
        assertThat(plan.notes()).anyMatch(n -> n.startsWith("one router cannot hold the dense weights"));
    }

    @Test
    void maverickOnH100sAt64SequencesOf8kTokens() throws IOException {
        ModelConfig config = CapacityPlannerTest.example("llama4-maverick");
        JsonObject text = config.raw();
        long layers = text.get("num_hidden_layers").getAsLong();
        long kvHeads = text.get("num_key_value_heads").getAsLong();
        long headDim = text.get("head_dim").getAsLong();
        long chunk = text.get("attention_chunk_size").getAsLong();
        long perLayerToken = kvHeads * headDim * 2 * 2;
        long perToken = layers * perLayerToken;
        assertThat(perToken).isEqualTo(196_608); // 48 x 8 x 128 x 2 x 2
        // dense = total - routed parameters (CapacityPlannerTest's counts), bf16
        long dense = (400_711_848_960L - 386_547_056_640L) * 2;
        long usable = (long) Math.floor(80 * GIB * 0.9);
        long perSequence = perToken * 8192;
        long sequencesPerRouter = (usable - dense) / perSequence;
        long routers = Math.ceilDiv(64, sequencesPerRouter);

        CapacityPlan plan = CapacityPlanner.plan(config, CapacityRequest.of(80 * GIB),
                RouterRequest.defaults().withDevice(RouterRequest.Device.GPU));
        RouterPlan p = plan.routers();
        assertThat(p.kvBytesPerToken()).isEqualTo(perToken);
        assertThat(p.denseBytes()).isEqualTo(dense);
        assertThat(p.routers()).isEqualTo(routers).isEqualTo(3);
        assertThat(plan.workers()).isEqualTo(11);
        assertThat(plan.accelerators()).isEqualTo(11 + routers);

        // Every fourth layer is NoPE with full attention; the others attend within 8192-token chunks, so
        // at 8192 tokens every layer reads all of them.
        assertThat(p.kvReadBytesPerSequence()).isEqualTo(perSequence);
        long fullLayers = layers / 4;
        CapacityPlan longer = CapacityPlanner.plan(config, CapacityRequest.of(80 * GIB),
                RouterRequest.defaults().withContextTokens(16_384).withDevice(RouterRequest.Device.GPU));
        assertThat(longer.routers().kvReadBytesPerSequence())
                .isEqualTo(perLayerToken * (fullLayers * 16_384 + (layers - fullLayers) * chunk));
        assertThat(longer.routers().kvBytesPerSequence()).as("every position is still held")
                .isEqualTo(perToken * 16_384);

        // 64 tokens, top-1 of 128: 128(1 - (127/128)^64) experts reached per layer, 24 MoE layers of 240 MiB experts
        double touched = 128 * (1 - Math.pow(127.0 / 128, 64));
        assertThat(p.expertsTouchedPerLayer()).isCloseTo(touched, within(1e-9));
        assertThat((double) p.expertBytesPerStep()).isCloseTo(24 * touched * (240L << 20), within(1.0));
        double routerSeconds = (dense + Math.ceilDiv(64, routers) * perSequence) / 3350e9;
        double workerSeconds = Math.ceilDiv(p.expertBytesPerStep(), 11) / 3350e9;
        assertThat(p.routerStepSeconds()).isCloseTo(routerSeconds, within(1e-12));
        assertThat(p.workerStepSeconds()).isCloseTo(workerSeconds, within(1e-12));
        assertThat(p.routersSetTheSpeed()).isEqualTo(routerSeconds > workerSeconds).isTrue();

        JsonObject json = JsonParser.parseString(plan.toJson()).getAsJsonObject();
        assertThat(json.get("accelerators").getAsInt()).isEqualTo(11 + routers);
        assertThat(json.getAsJsonObject("routers").get("count").getAsLong()).isEqualTo(routers);
        assertThat(json.getAsJsonObject("routers").get("kv_bytes_per_token").getAsLong()).isEqualTo(perToken);
        assertThat(json.getAsJsonObject("decode").get("set_by").getAsString()).isEqualTo("routers");
        assertThat(json.getAsJsonObject("memory").has("dense_fits_one_accelerator")).isFalse();
        assertThat(plan.notes()).anyMatch(n -> n.startsWith("36 of 48 layers attend within chunks of 8192"));
    }

    @Test
    void deepseekCachesTheCompressedLatent() {
        ModelConfig config = ModelConfig.parse(JsonParser.parseString("""
                {"architectures": ["DeepseekV3ForCausalLM"], "hidden_size": 64, "num_hidden_layers": 5,
                 "num_attention_heads": 4, "n_routed_experts": 16, "num_experts_per_tok": 2,
                 "moe_intermediate_size": 32, "kv_lora_rank": 24, "qk_rope_head_dim": 8, "vocab_size": 100}
                """).getAsJsonObject(), "ds");
        RouterPlan p = CapacityPlanner.plan(config, CapacityRequest.of(1L << 30)).routers();
        assertThat(p.kvBytesPerToken()).isEqualTo(5 * (24 + 8) * 2);
    }

    @Test
    void aRopeTheDecoderRefusesStillSizesTheCacheFromTheAttentionShape() {
        JsonObject json = JsonParser.parseString(CapacityPlannerTest.SMALL_MIXTRAL).getAsJsonObject();
        json.add("rope_scaling", JsonParser.parseString("{\"rope_type\": \"yarn\", \"factor\": 4.0}"));
        CapacityPlan plan = CapacityPlanner.plan(ModelConfig.parse(json, "yarn"), CapacityRequest.of(200_000));
        assertThat(plan.routers().kvBytesPerToken()).isEqualTo(2 * 2 * 16 * 2 * 2);
        assertThat(plan.notes()).anyMatch(n -> n.startsWith("KV cache sized with every layer attending")
                && n.contains("rope type yarn"));
    }

    @Test
    void badRouterRequestsAreRefusedWithTheirNames() {
        assertThatThrownBy(() -> RouterRequest.defaults().withConcurrency(0)).hasMessageContaining("concurrency");
        assertThatThrownBy(() -> RouterRequest.defaults().withContextTokens(0)).hasMessageContaining("context");
        assertThatThrownBy(() -> RouterRequest.defaults().withBandwidths(0, 1)).hasMessageContaining("bandwidth");
        assertThatThrownBy(() -> RouterRequest.Device.parse("tpu")).hasMessage("router device must be cpu or gpu, got 'tpu'");
    }
}
