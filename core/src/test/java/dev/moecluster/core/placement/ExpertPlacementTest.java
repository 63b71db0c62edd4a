package dev.moecluster.core.placement;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import com.google.gson.JsonParser;
import dev.moecluster.core.model.ModelConfig;
import java.util.List;
import java.util.Map;
import java.util.Set;
import org.junit.jupiter.api.Test;

class ExpertPlacementTest {
    private static final List<String> WORKERS = List.of("a:1", "b:2", "c:3");

    @Test
    void roundRobinPutsReplicasOnDistinctConsecutiveWorkers() {
        ExpertPlacement p = ExpertPlacement.roundRobin(WORKERS, List.of(1, 3), 4, 2);
        assertThat(p.replicas(1, 0)).containsExactly(0, 1);
        assertThat(p.replicas(1, 2)).containsExactly(2, 0);
        // the second MoE layer continues where the first left off: slot 4 + e
        assertThat(p.replicas(3, 0)).containsExactly(1, 2);
        assertThat(p.replicas(3, 3)).containsExactly(1, 2);
        assertThat(p.replicas(0, 0)).isEmpty();
        assertThat(p.replicas(1, 4)).isEmpty();
    }

    @Test
    void heldByListsEachWorkersExpertsPerLayer() {
        ExpertPlacement p = ExpertPlacement.roundRobin(WORKERS, List.of(1, 3), 4, 1);
        assertThat(p.heldBy(0)).isEqualTo(Map.of(1, Set.of(0, 3), 3, Set.of(2)));
        assertThat(p.heldBy(1)).isEqualTo(Map.of(1, Set.of(1), 3, Set.of(0, 3)));
        int total = 0;
        for (int w = 0; w < 3; w++) {
            total += p.heldBy(w).values().stream().mapToInt(Set::size).sum();
        }
        assertThat(total).isEqualTo(8);
    }

    @Test
    void jsonRoundTripsAndIsReadable() {
        ExpertPlacement p = ExpertPlacement.roundRobin(WORKERS, List.of(0, 1), 3, 2);
        String json = p.toJson();
        var root = JsonParser.parseString(json).getAsJsonObject();
        assertThat(root.get("epoch").getAsLong()).isEqualTo(1);
        assertThat(root.getAsJsonArray("workers")).hasSize(3);
        assertThat(root.getAsJsonObject("layers").getAsJsonArray("1").get(0).getAsJsonArray().get(0).getAsInt()).isEqualTo(0);
        assertThat(ExpertPlacement.fromJson(json)).isEqualTo(p);
    }

    @Test
    void rejectsImpossibleReplicaCountsAndBadIndices() {
        assertThatThrownBy(() -> ExpertPlacement.roundRobin(WORKERS, List.of(0), 4, 4))
                .hasMessageContaining("replicas must be between 1 and the number of workers (3), got 4");
        assertThatThrownBy(() -> ExpertPlacement.roundRobin(List.of(), List.of(0), 4, 1))
                .hasMessageContaining("at least one worker");
        assertThatThrownBy(() -> new ExpertPlacement(1, WORKERS, Map.of(0, new int[][] {{5}})))
                .hasMessageContaining("names worker index 5 but there are 3 workers");
        ExpertPlacement p = ExpertPlacement.roundRobin(WORKERS, List.of(0), 4, 1);
        assertThatThrownBy(() -> p.indexOf("z:9")).hasMessageContaining("worker z:9 is not in the placement");
    }

    @Test
    void requireCoversNamesTheFirstUnplacedExpert() {
        ModelConfig cfg = mixtral(2, 4);
        ExpertPlacement partial = new ExpertPlacement(1, WORKERS, Map.of(0, new int[][] {{0}, {1}, {2}, {0}}));
        assertThatThrownBy(() -> partial.requireCovers(cfg)).hasMessageContaining("no worker for expert 0 of layer 1");
        ExpertPlacement.roundRobin(WORKERS, cfg, 3).requireCovers(cfg);
    }

    @Test
    void assignmentSpecsParseAllListsAndPerLayerForms() {
        ModelConfig cfg = mixtral(2, 8);
        assertThat(ExpertAssignment.parse("all", cfg).expertCount()).isEqualTo(16);
        ExpertAssignment list = ExpertAssignment.parse("0-2, 6", cfg);
        assertThat(list.byLayer()).isEqualTo(Map.of(0, Set.of(0, 1, 2, 6), 1, Set.of(0, 1, 2, 6)));
        ExpertAssignment perLayer = ExpertAssignment.parse("1:3-4;0:7", cfg);
        assertThat(perLayer.holds(1, 4)).isTrue();
        assertThat(perLayer.holds(0, 4)).isFalse();
        assertThat(perLayer.holds(0, 7)).isTrue();
        assertThatThrownBy(() -> ExpertAssignment.parse("9", cfg)).hasMessageContaining("expert 9 out of range: the model has 8 experts");
        assertThatThrownBy(() -> ExpertAssignment.parse("2:1", cfg)).hasMessageContaining("layer 2 in --experts is not a MoE layer");
        assertThatThrownBy(() -> ExpertAssignment.parse("x", cfg)).hasMessageContaining("bad expert 'x'");
    }

    private static ModelConfig mixtral(int layers, int experts) {
        var json = JsonParser.parseString("""
                {"architectures": ["MixtralForCausalLM"], "hidden_size": 16, "num_hidden_layers": %d,
                 "num_local_experts": %d, "num_experts_per_tok": 2, "intermediate_size": 32, "torch_dtype": "bfloat16"}
                """.formatted(layers, experts)).getAsJsonObject();
        return ModelConfig.parse(json, "m");
    }
}
