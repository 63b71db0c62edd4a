package dev.moecluster.coordinator;

import static dev.moecluster.coordinator.PlacementChecks.assertDiffMatches;
import static dev.moecluster.coordinator.PlacementChecks.assertValid;
import static dev.moecluster.coordinator.PlacementChecks.copiesPerWorker;
import static dev.moecluster.coordinator.PlacementChecks.workers;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import com.google.gson.JsonParser;
import dev.moecluster.coordinator.PlacementPlan.Decision;
import dev.moecluster.core.model.ModelConfig;
import dev.moecluster.core.placement.ExpertPlacement;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import org.junit.jupiter.api.Test;

class PlacementPlannerTest {
    private static final long EXPERT = 1_000;
    private static final ModelShape SHAPE = new ModelShape(List.of(1, 3, 5, 7), 16, EXPERT);
    private static final ExpertLoad LOAD = PlacementChecks.zipf(SHAPE, 1.1, 7);

    private final PlacementPlanner planner = new PlacementPlanner(PlacementPolicy.defaults().withMinReplicas(2));

    @Test
    void firstPlacementHasEpochOneAndLoadsEveryCopy() {
        List<WorkerCapacity> workers = workers(8, 20 * EXPERT);
        PlacementPlan plan = planner.plan(SHAPE, workers, LOAD);

        assertThat(plan.decision()).isEqualTo(Decision.INITIAL);
        assertThat(plan.placement().epoch()).isEqualTo(1);
        assertThat(plan.unloads()).isEmpty();
        assertThat(plan.loads()).hasSize(copiesPerWorker(plan.placement()).values().stream().mapToInt(i -> i).sum());
        assertThat(plan.balancednessBefore()).isZero();
        assertThat(plan.balancednessAfter()).isGreaterThanOrEqualTo(0.95);
        assertValid(plan, SHAPE, workers, 2);
    }

    @Test
    void sameInputLeavesPlacementUnchanged() {
        List<WorkerCapacity> workers = workers(8, 20 * EXPERT);
        ExpertPlacement current = planner.plan(SHAPE, workers, LOAD).placement();

        PlacementPlan plan = planner.plan(SHAPE, workers, LOAD, current);

        assertThat(plan.decision()).isEqualTo(Decision.UNCHANGED);
        assertThat(plan.changed()).isFalse();
        assertThat(plan.placement()).isSameAs(current);
        assertThat(plan.loads()).isEmpty();
        assertThat(plan.unloads()).isEmpty();
        assertThat(plan.balancednessAfter()).isEqualTo(plan.balancednessBefore());
    }

    @Test
    void restoresReplicaCountOnSurvivorsWhenWorkerDies() {
        List<WorkerCapacity> workers = workers(8, 20 * EXPERT);
        ExpertPlacement current = planner.plan(SHAPE, workers, LOAD).placement();
        String dead = workers.get(3).id();
        List<WorkerCapacity> survivors = workers.stream().filter(w -> !w.id().equals(dead)).toList();

        PlacementPlan plan = planner.plan(SHAPE, survivors, LOAD, current);

        assertThat(plan.decision()).isEqualTo(Decision.REPAIR);
        assertThat(plan.placement().epoch()).isEqualTo(current.epoch() + 1);
        assertThat(plan.placement().workers()).doesNotContain(dead);
        assertValid(plan, SHAPE, survivors, 2);
        assertDiffMatches(plan, current, survivors);
        assertThat(plan.unloads()).noneMatch(c -> c.worker().equals(dead));
        assertThat(plan.loads()).noneMatch(c -> c.worker().equals(dead));
        assertThat(plan.balancednessAfter()).isGreaterThanOrEqualTo(0.9);
    }

    @Test
    void repairWithoutRebalancingOnlyReplacesTheDeadWorkersCopies() {
        List<WorkerCapacity> workers = workers(8, 20 * EXPERT);
        ExpertPlacement current = planner.plan(SHAPE, workers, LOAD).placement();
        String dead = workers.get(3).id();
        int deadIndex = current.indexOf(dead);
        List<WorkerCapacity> survivors = workers.stream().filter(w -> !w.id().equals(dead)).toList();
        PlacementPlanner repairOnly = new PlacementPlanner(planner.policy().withMigrationThreshold(1.0));

        PlacementPlan plan = repairOnly.plan(SHAPE, survivors, LOAD, current);

        assertThat(plan.decision()).isEqualTo(Decision.REPAIR);
        assertThat(plan.unloads()).isEmpty();
        assertThat(plan.loads()).hasSize(copiesPerWorker(current).get(dead));
        for (int layer : SHAPE.moeLayers()) {
            for (int e = 0; e < SHAPE.numExperts(); e++) {
                int[] before = current.replicas(layer, e);
                int[] after = plan.placement().replicas(layer, e);
                assertThat(after).as("L%d/E%d keeps its replica count", layer, e).hasSize(before.length);
                for (int w : before) {
                    if (w != deadIndex) {
                        assertThat(after).contains(plan.placement().indexOf(current.workers().get(w)));
                    }
                }
            }
        }
    }

    @Test
    void survivingPrimaryStaysPrimary() {
        List<WorkerCapacity> workers = workers(4, 48 * EXPERT);
        ExpertPlacement current = ExpertPlacement.roundRobin(
                workers.stream().map(WorkerCapacity::id).toList(), SHAPE.moeLayers(), SHAPE.numExperts(), 2);
        List<WorkerCapacity> survivors = workers.subList(1, 4);
        PlacementPlan plan = new PlacementPlanner(PlacementPolicy.defaults().withMinReplicas(2)
                .withMigrationThreshold(1.0)).plan(SHAPE, survivors, LOAD, current);

        for (int layer : SHAPE.moeLayers()) {
            for (int e = 0; e < SHAPE.numExperts(); e++) {
                String primary = current.workers().get(current.replicas(layer, e)[0]);
                if (!primary.equals(workers.get(0).id())) {
                    assertThat(plan.placement().workers().get(plan.placement().replicas(layer, e)[0])).isEqualTo(primary);
                }
            }
        }
    }

    @Test
    void drainingWorkerGetsNothingAndItsCopiesMoveOff() {
        List<WorkerCapacity> workers = workers(8, 20 * EXPERT);
        ExpertPlacement current = planner.plan(SHAPE, workers, LOAD).placement();
        String draining = workers.get(5).id();
        List<WorkerCapacity> marked = new ArrayList<>(workers);
        marked.set(5, workers.get(5).withDraining(true));
        int held = copiesPerWorker(current).get(draining);

        PlacementPlan plan = planner.plan(SHAPE, marked, LOAD, current);

        assertThat(plan.decision()).isEqualTo(Decision.REPAIR);
        assertThat(copiesPerWorker(plan.placement()).get(draining)).isZero();
        assertThat(plan.unloads().stream().filter(c -> c.worker().equals(draining))).hasSize(held);
        assertThat(plan.loads()).noneMatch(c -> c.worker().equals(draining));
        assertValid(plan, SHAPE, marked, 2);
        assertDiffMatches(plan, current, marked);
    }

    @Test
    void joiningWorkerReceivesExpertsWhenThatImprovesBalance() {
        List<WorkerCapacity> workers = workers(4, 40 * EXPERT);
        ExpertPlacement current = planner.plan(SHAPE, workers, LOAD).placement();
        List<WorkerCapacity> grown = new ArrayList<>(workers);
        WorkerCapacity joined = WorkerCapacity.of("new:7001", 40 * EXPERT);
        grown.add(joined);

        PlacementPlan plan = planner.plan(SHAPE, grown, LOAD, current);

        // Five workers where four carried everything: balancedness was at most 0.8.
        assertThat(plan.balancednessBefore()).isLessThanOrEqualTo(0.8 + 1e-9);
        assertThat(plan.decision()).isEqualTo(Decision.REBALANCE);
        assertThat(plan.balancednessAfter()).isGreaterThan(plan.balancednessBefore() + 0.05);
        assertThat(copiesPerWorker(plan.placement()).get(joined.id())).isPositive();
        assertThat(plan.loads()).anyMatch(c -> c.worker().equals(joined.id()));
        assertValid(plan, SHAPE, grown, 2);
        assertDiffMatches(plan, current, grown);
    }

    @Test
    void joiningWorkerWaitsWhileTheGainIsBelowTheThreshold() {
        List<WorkerCapacity> workers = workers(40, 8 * EXPERT);
        ExpertPlacement current = planner.plan(SHAPE, workers, LOAD).placement();
        List<WorkerCapacity> grown = new ArrayList<>(workers);
        grown.add(WorkerCapacity.of("new:7001", 8 * EXPERT));

        // One idle worker in 41 costs about 1/41 of balancedness: less than the 0.05 threshold.
        PlacementPlan plan = planner.plan(SHAPE, grown, LOAD, current);

        assertThat(plan.decision()).isEqualTo(Decision.UNCHANGED);
        assertThat(plan.placement()).isSameAs(current);
    }

    @Test
    void smallGainLeavesPlacementUnchangedAndLargerThresholdGapRebalances() {
        ModelShape shape = new ModelShape(List.of(0), 4, EXPERT);
        List<WorkerCapacity> workers = workers(2, 4 * EXPERT);
        // Worker 0 holds experts 0 and 1 (100 + 97), worker 1 experts 2 and 3 (100 + 103): 0.9777.
        ExpertPlacement current = new ExpertPlacement(5, workers.stream().map(WorkerCapacity::id).toList(),
                Map.of(0, new int[][] {{0}, {0}, {1}, {1}}));
        ExpertLoad load = new ExpertLoad(Map.of(0, new long[] {100, 97, 100, 103}));

        PlacementPlan small = new PlacementPlanner(PlacementPolicy.defaults().withMigrationThreshold(0.05))
                .plan(shape, workers, load, current);
        assertThat(small.decision()).isEqualTo(Decision.UNCHANGED);
        assertThat(small.balancednessBefore()).isCloseTo(200.0 / 203, org.assertj.core.data.Offset.offset(1e-9));

        PlacementPlan eager = new PlacementPlanner(PlacementPolicy.defaults().withMigrationThreshold(0.0)
                .withTargetBalancedness(1.0)).plan(shape, workers, load, current);
        assertThat(eager.decision()).isEqualTo(Decision.REBALANCE);
        assertThat(eager.placement().epoch()).isEqualTo(6);
        assertThat(eager.balancednessAfter()).isEqualTo(1.0);
        assertThat(eager.loads()).hasSize(eager.unloads().size());
        assertDiffMatches(eager, current, workers);
    }

    @Test
    void hotExpertGetsRedundantReplicasWhileMemoryAllows() {
        ModelShape shape = new ModelShape(List.of(0), 8, EXPERT);
        long[] tokens = {7000, 100, 100, 100, 100, 100, 100, 100};
        ExpertLoad load = new ExpertLoad(Map.of(0, tokens));
        List<WorkerCapacity> workers = workers(8, 2 * EXPERT);

        PlacementPlan plan = new PlacementPlanner(PlacementPolicy.defaults()).plan(shape, workers, load);

        // Expert 0 carries 7/7.7 of the load: only several copies bring balance.
        assertThat(plan.placement().replicas(0, 0).length).isGreaterThanOrEqualTo(7);
        assertThat(plan.balancednessAfter()).isGreaterThanOrEqualTo(0.9);
        assertValid(plan, shape, workers, 1);

        PlacementPlan tight = new PlacementPlanner(PlacementPolicy.defaults())
                .plan(shape, workers(8, EXPERT), load);
        assertThat(tight.placement().replicas(0, 0)).hasSize(1);
        assertValid(tight, shape, workers(8, EXPERT), 1);
    }

    @Test
    void redundantReplicasOfHotExpertsLiftZipfBalance() {
        // Zipf s = 1.2 over 64 experts: each layer's hottest expert carries ~29% of the layer, more
        // than a worker's fair share (4 layers / 16 workers = 25% of a layer).
        ModelShape shape = new ModelShape(List.of(0, 1, 2, 3), 64, EXPERT);
        ExpertLoad load = PlacementChecks.zipf(shape, 1.2, 11);
        PlacementPlanner defaults = new PlacementPlanner(PlacementPolicy.defaults());

        PlacementPlan noRoom = defaults.plan(shape, workers(16, 16 * EXPERT), load);
        PlacementPlan room = defaults.plan(shape, workers(16, 20 * EXPERT), load);

        assertThat(noRoom.balancednessAfter()).isLessThan(0.9);
        assertThat(room.balancednessAfter()).isGreaterThanOrEqualTo(0.95);
        assertThat(PlacementChecks.redundantCopies(room.placement(), 1)).isBetween(1, 8);
        for (int layer : shape.moeLayers()) {
            int hottest = 0;
            for (int e = 0; e < 64; e++) {
                hottest = load.tokens(layer, e) > load.tokens(layer, hottest) ? e : hottest;
            }
            assertThat(room.placement().replicas(layer, hottest).length).as("hottest of layer %d", layer).isGreaterThan(1);
        }
    }

    @Test
    void withoutLoadExpertsSpreadEvenly() {
        List<WorkerCapacity> workers = workers(6, 64 * EXPERT);
        PlacementPlan plan = planner.plan(SHAPE, workers, ExpertLoad.none());

        // 64 experts × 2 replicas over 6 workers: 21 or 22 each.
        assertThat(copiesPerWorker(plan.placement()).values()).allMatch(n -> n == 21 || n == 22);
        assertThat(plan.balancednessAfter()).isEqualTo(1.0);
    }

    @Test
    void shrunkMemoryTrimsTheWorker() {
        List<WorkerCapacity> workers = workers(8, 20 * EXPERT);
        ExpertPlacement current = planner.plan(SHAPE, workers, LOAD).placement();
        List<WorkerCapacity> shrunk = new ArrayList<>(workers);
        shrunk.set(2, workers.get(2).withMemoryBytes(6 * EXPERT));

        PlacementPlan plan = planner.plan(SHAPE, shrunk, LOAD, current);

        assertThat(plan.decision()).isEqualTo(Decision.REPAIR);
        assertThat(copiesPerWorker(plan.placement()).get(workers.get(2).id())).isLessThanOrEqualTo(6);
        assertValid(plan, SHAPE, shrunk, 2);
    }

    @Test
    void failsNamingTheMemoryShortfall() {
        // 64 experts × 2 replicas = 128 copies; 8 workers × 15 = 120.
        assertThatThrownBy(() -> planner.plan(SHAPE, workers(8, 15 * EXPERT + 999), LOAD))
                .isInstanceOf(InfeasiblePlacementException.class)
                .hasMessageContaining("needs 128 expert copies")
                .hasMessageContaining("hold 120 copies")
                .hasMessageContaining("short by 8 copies")
                .hasMessageContaining("(8000 bytes)");
    }

    @Test
    void failsWhenFewerWorkersThanMinReplicas() {
        List<WorkerCapacity> workers = new ArrayList<>(workers(3, 64 * EXPERT));
        workers.set(0, workers.get(0).withDraining(true));
        workers.set(1, workers.get(1).withMemoryBytes(EXPERT - 1));
        assertThatThrownBy(() -> planner.plan(SHAPE, workers, LOAD))
                .isInstanceOf(InfeasiblePlacementException.class)
                .hasMessageContaining("min replicas 2 needs 2 distinct workers")
                .hasMessageContaining("only 1 of 3 workers qualify (1 draining, 1 with less memory than one expert)")
                .hasMessageContaining("short by 1 worker");
    }

    @Test
    void rejectsLoadThatDoesNotMatchTheModel() {
        List<WorkerCapacity> workers = workers(4, 64 * EXPERT);
        assertThatThrownBy(() -> planner.plan(SHAPE, workers, new ExpertLoad(Map.of(2, new long[16]))))
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("layer 2, which is not a MoE layer");
        assertThatThrownBy(() -> planner.plan(SHAPE, workers, new ExpertLoad(Map.of(1, new long[8]))))
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("has 8 experts, the model has 16");
        assertThatThrownBy(() -> new ExpertLoad(Map.of(1, new long[] {1, -1})))
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("negative load");
    }

    @Test
    void rejectsWorkersListedTwice() {
        List<WorkerCapacity> workers = List.of(WorkerCapacity.of("a:1", 64 * EXPERT), WorkerCapacity.of("a:1", EXPERT));
        assertThatThrownBy(() -> planner.plan(SHAPE, workers, LOAD))
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("a:1 is listed twice");
    }

    @Test
    void emptyCurrentPlacementIsPlannedAfresh() {
        List<WorkerCapacity> workers = workers(4, 64 * EXPERT);
        ExpertPlacement empty = new ExpertPlacement(9, List.of(), Map.of());
        PlacementPlan plan = planner.plan(SHAPE, workers, LOAD, empty);
        assertThat(plan.decision()).isEqualTo(Decision.INITIAL);
        assertThat(plan.placement().epoch()).isEqualTo(10);
        assertValid(plan, SHAPE, workers, 2);
    }

    @Test
    void copiesOutsideTheModelAreUnloaded() {
        List<WorkerCapacity> workers = workers(4, 64 * EXPERT);
        ExpertPlacement current = planner.plan(SHAPE, workers, LOAD).placement();
        Map<Integer, int[][]> layers = new TreeMap<>(current.layers());
        layers.put(9, new int[][] {{0}});
        ExpertPlacement stray = new ExpertPlacement(current.epoch(), current.workers(), layers);

        PlacementPlan plan = planner.plan(SHAPE, workers, LOAD, stray);

        assertThat(plan.decision()).isEqualTo(Decision.REPAIR);
        assertThat(plan.unloads()).contains(new ExpertCopy(current.workers().get(0), 9, 0));
        assertThat(plan.placement().layers()).doesNotContainKey(9);
    }

    @Test
    void balancednessIsMeanOverMaxWithLoadSplitOverReplicas() {
        ExpertPlacement placement = new ExpertPlacement(1, List.of("a", "b"), Map.of(0, new int[][] {{0, 1}, {1}}));
        ExpertLoad load = new ExpertLoad(Map.of(0, new long[] {100, 50}));
        // a: 50, b: 50 + 50 → mean 75, max 100.
        assertThat(PlacementPlanner.balancedness(placement, load)).isEqualTo(0.75);
        assertThat(PlacementPlanner.balancedness(placement, ExpertLoad.none())).isEqualTo(1.0);
    }

    @Test
    void modelShapeComesFromTheCheckpointConfig() {
        ModelConfig config = ModelConfig.parse(JsonParser.parseString("""
                {"architectures": ["Qwen3MoeForCausalLM"], "hidden_size": 2048, "num_hidden_layers": 48,
                 "num_experts": 128, "num_experts_per_tok": 8, "moe_intermediate_size": 768,
                 "torch_dtype": "bfloat16"}""").getAsJsonObject(), "qwen3-30b-a3b");
        ModelShape shape = ModelShape.of(config);
        assertThat(shape.moeLayers()).hasSize(48);
        assertThat(shape.numExperts()).isEqualTo(128);
        assertThat(shape.bytesPerExpert()).isEqualTo(3L * 2048 * 768 * 2);
    }

    @Test
    void fp8CheckpointsAreSizedAtOneBytePerExpertWeightPlusTheirScales() {
        // Maverick's FP8 release: multimodal config, bf16 torch_dtype, compressed-tensors FP8 experts.
        ModelConfig config = ModelConfig.parse(JsonParser.parseString("""
                {"architectures": ["Llama4ForConditionalGeneration"], "torch_dtype": "bfloat16",
                 "quantization_config": {"quant_method": "compressed-tensors", "format": "float-quantized",
                   "config_groups": {"group_0": {"targets": ["Linear"],
                     "weights": {"num_bits": 8, "type": "float", "strategy": "channel"}}}},
                 "text_config": {"hidden_size": 5120, "num_hidden_layers": 48, "num_local_experts": 128,
                   "num_experts_per_tok": 1, "intermediate_size": 8192, "interleave_moe_layer_step": 2,
                   "torch_dtype": "bfloat16"}}""").getAsJsonObject(), "maverick-fp8");
        ModelShape shape = ModelShape.of(config);
        assertThat(shape.moeLayers()).hasSize(24);
        assertThat(shape.bytesPerExpert()).isEqualTo(3L * 5120 * 8192 + 4L * (2 * 8192 + 5120));
        // 128 experts x 24 layers at ~120 MiB: half the 720 GiB of the bf16 release.
        assertThat(shape.bytesPerExpert() * shape.totalExperts() / (1L << 30)).isEqualTo(360);
    }

    @Test
    void policyRejectsValuesOutOfRange() {
        assertThatThrownBy(() -> PlacementPolicy.defaults().withMinReplicas(0))
                .hasMessageContaining("min replicas must be at least 1");
        assertThatThrownBy(() -> PlacementPolicy.defaults().withMigrationThreshold(Double.NaN))
                .hasMessageContaining("migration threshold");
        assertThatThrownBy(() -> PlacementPolicy.defaults().withTargetBalancedness(0))
                .hasMessageContaining("target balancedness");
        assertThat(PlacementPolicy.defaults())
                .isEqualTo(new PlacementPolicy(1, 0.05, 0.95));
    }
}
