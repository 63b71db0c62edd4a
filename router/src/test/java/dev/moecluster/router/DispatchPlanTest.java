package dev.moecluster.router;

import static org.assertj.core.api.Assertions.assertThat;

import dev.moecluster.core.placement.ExpertPlacement;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import org.junit.jupiter.api.Test;

/** Which replica gets an expert's rows: healthy first, then the one expected to answer first, then the least loaded. */
class DispatchPlanTest {
    private static final ExpertPlacement BOTH = ExpertPlacement.roundRobin(List.of("a:1", "b:1"), List.of(0), 4, 2);
    private static final List<DispatchPlan.ExpertRows> ROWS = List.of(new DispatchPlan.ExpertRows(0, new int[] {0, 1}),
            new DispatchPlan.ExpertRows(1, new int[] {2}), new DispatchPlan.ExpertRows(2, new int[] {3, 4, 5}));

    private record View(Map<String, Long> expected, Map<String, Long> outstanding, Set<String> unhealthy)
            implements DispatchPlan.WorkerView {
        @Override
        public long outstandingRows(String address) {
            return outstanding.getOrDefault(address, 0L);
        }

        @Override
        public boolean healthy(String address) {
            return !unhealthy.contains(address);
        }

        @Override
        public long expectedNanos(String address, long rowsAhead, long rows) {
            return expected.getOrDefault(address, 0L);
        }
    }

    private static Map<String, Integer> rowsByWorker(DispatchPlan plan) {
        Map<String, Integer> out = new LinkedHashMap<>();
        plan.shares().forEach(s -> out.put(s.address(), s.rows()));
        return out;
    }

    @Test
    void theReplicaExpectedToAnswerFirstGetsTheRowsEvenWithMoreQueued() {
        var view = new View(Map.of("a:1", 200_000_000L, "b:1", 2_000_000L), Map.of("b:1", 50L), Set.of());
        assertThat(rowsByWorker(DispatchPlan.of(BOTH, 0, ROWS, Set.of(), view, Map.of()))).containsExactly(Map.entry("b:1", 6));
    }

    @Test
    void healthBeforeSpeedAndLoadBreaksTies() {
        var unhealthyFast = new View(Map.of("a:1", 200_000_000L, "b:1", 2_000_000L), Map.of(), Set.of("b:1"));
        assertThat(rowsByWorker(DispatchPlan.of(BOTH, 0, ROWS, Set.of(), unhealthyFast, Map.of()))).containsExactly(Map.entry("a:1", 6));
        // nothing measured: the least loaded, counting what the plan already gave each
        var unknown = new View(Map.of(), Map.of("a:1", 1L), Set.of());
        assertThat(rowsByWorker(DispatchPlan.of(BOTH, 0, ROWS, Set.of(), unknown, Map.of())))
                .containsExactly(Map.entry("b:1", 2), Map.entry("a:1", 4));
    }

    @Test
    void anExcludedReplicaGetsNothing() {
        var view = new View(Map.of("a:1", 200_000_000L, "b:1", 2_000_000L), Map.of(), Set.of());
        assertThat(rowsByWorker(DispatchPlan.of(BOTH, 0, ROWS, Set.of(1), view, Map.of()))).containsExactly(Map.entry("a:1", 6));
    }
}
