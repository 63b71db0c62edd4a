package dev.moecluster.cli;

import static org.assertj.core.api.Assertions.assertThat;

import dev.moecluster.core.model.Architecture;
import dev.moecluster.core.model.ModelConfig;
import dev.moecluster.worker.BackendMemory;
import dev.moecluster.worker.CpuBackend;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;

/** A worker reports its backend's capacity as its memory budget, and the coordinator's planner keeps to it. */
class BackendCapacityTest {
    private final Path dir = Clusters.tinyModel(Architecture.MIXTRAL);

    /** A cpu backend that says it can hold only {@code capacity} bytes, as a small GPU would. */
    private static final class SmallBackend extends ForwardingBackend {
        private final long capacity;

        SmallBackend(long capacity) {
            this.capacity = capacity;
        }

        @Override
        public BackendMemory memory() {
            BackendMemory m = cpu.memory();
            return new BackendMemory(m.usedBytes(), capacity, m.experts());
        }
    }

    @Test
    void thePlannerGivesAWorkerNoMoreExpertsThanItsBackendCanHold() throws Exception {
        ModelConfig cfg = ModelConfig.load(dir);
        long expertBytes = 3L * cfg.hiddenSize() * cfg.expertIntermediateSize() * cfg.dtype().byteSize();
        long capacity = 2 * expertBytes + expertBytes / 2; // room for two experts, not three
        var options = LocalCluster.Options.of(dir, 3, 1).withCoordinator(true)
                .withBackends(i -> i == 0 ? new SmallBackend(capacity) : new CpuBackend());
        try (LocalCluster cluster = LocalCluster.start(options)) {
            int total = cfg.moeLayerList().size() * cfg.numExperts();
            assertThat(cluster.workers().get(0).expertCount()).isLessThanOrEqualTo(2);
            int held = 0;
            for (var w : cluster.workers()) {
                held += w.expertCount();
            }
            assertThat(held).isEqualTo(total);
            assertThat(cluster.placement().workers()).hasSize(3);
        }
    }
}
