package dev.moecluster.coordinator;

import static org.assertj.core.api.Assertions.assertThat;

import dev.moecluster.control.WorkerRecord;
import dev.moecluster.control.WorkerState;
import dev.moecluster.core.placement.ExpertPlacement;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

/** The coordinator's computed series. */
class CoordinatorMetricsTest {
    private static final List<String> WORKERS = List.of("w0:1", "w1:1", "w2:1");
    // layer 0: expert 0 on w0 only, expert 1 on w1 and w2, expert 2 on w2 only; layer 2: expert 0 on w0 and w1
    private static final ExpertPlacement PLACEMENT = new ExpertPlacement(3, WORKERS,
            Map.of(0, new int[][] {{0}, {1, 2}, {2}}, 2, new int[][] {{0, 1}}));

    private static WorkerRecord worker(String address, WorkerState state) {
        return new WorkerRecord(address, address, "cpu", 1L << 30, state, Map.of(), 3, 0);
    }

    @Test
    void countsExpertsWhoseEveryReplicaIsOnADeadOrMissingWorker() {
        // w2 dead and w0 gone from the registry: layer 0 loses experts 0 and 2; expert 1 and layer 2 keep w1
        var workers = Map.of("w1:1", worker("w1:1", WorkerState.ACTIVE), "w2:1", worker("w2:1", WorkerState.DEAD));

        assertThat(CoordinatorMetrics.expertsWithoutLiveReplica(PLACEMENT, workers)).isEqualTo(2);
    }

    @Test
    void drainingWorkersStillServeTheirCopies() {
        var workers = Map.of("w0:1", worker("w0:1", WorkerState.DRAINING), "w1:1", worker("w1:1", WorkerState.DRAINED),
                "w2:1", worker("w2:1", WorkerState.ACTIVE));

        // w1 drained: every expert it held has another copy on w0 (draining, still serving) or w2
        assertThat(CoordinatorMetrics.expertsWithoutLiveReplica(PLACEMENT, workers)).isZero();
    }

    @Test
    void noPlacementHasNoOrphans() {
        assertThat(CoordinatorMetrics.expertsWithoutLiveReplica(null, Map.of())).isZero();
        assertThat(CoordinatorMetrics.expertsWithoutLiveReplica(ExpertPlacement.none(), Map.of())).isZero();
    }
}
