package dev.moecluster.coordinator;

import static org.assertj.core.api.Assertions.assertThat;

import java.util.List;
import org.junit.jupiter.api.Test;

class SpeedClassesTest {

    @Test
    void likeWorkersShareTheSlowestFigureOfTheirClassAndUnknownStaysUnknown() {
        double[] grouped = SpeedClasses.of(new double[] {1_000, 2_300, 0, 25_000, 3_900, 90_000, 4_000});

        assertThat(grouped).containsExactly(1_000, 1_000, 0, 25_000, 1_000, 25_000, 4_000);
    }

    @Test
    void noisyLikeWorkersPlanExactlyAsWorkersOfUnknownSpeed() {
        ModelShape shape = new ModelShape(List.of(0, 1), 8, 1_000);
        ExpertLoad load = PlacementChecks.zipf(shape, 1.1, 7);
        List<WorkerCapacity> noisy = List.of(new WorkerCapacity("a:1", 10_000, false, 1_000),
                new WorkerCapacity("b:1", 10_000, false, 2_400), new WorkerCapacity("c:1", 10_000, false, 1_150));
        List<WorkerCapacity> unknown = noisy.stream().map(w -> w.withRowsPerSecond(0)).toList();
        PlacementPlanner planner = new PlacementPlanner(PlacementPolicy.defaults());

        assertThat(planner.plan(shape, SpeedClasses.apply(noisy), load)).isEqualTo(planner.plan(shape, unknown, load));
        assertThat(planner.plan(shape, noisy, load)).isNotEqualTo(planner.plan(shape, unknown, load));
    }
}
