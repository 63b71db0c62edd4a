package dev.moecluster.worker;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.junit.jupiter.api.Assumptions.assumeFalse;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.moecluster.core.placement.ExpertAssignment;
import dev.moecluster.worker.cuda.CudaAvailability;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.logging.Handler;
import java.util.logging.LogRecord;
import java.util.logging.Logger;
import org.junit.jupiter.api.Test;

class ExpertBackendsTest {
    private static final Logger LOG = Logger.getLogger(ExpertBackends.class.getName());

    @Test
    void createsTheCpuBackendByName() {
        try (ExpertBackend b = ExpertBackends.create("cpu")) {
            assertThat(b).isInstanceOf(CpuBackend.class);
            assertThat(b.name()).isEqualTo("cpu");
        }
    }

    @Test
    void theCpuKernelFlagForcesTheVectorFallbackAndRejectsUnknownKernels() {
        try (ExpertBackend b = ExpertBackends.create("cpu", "vector")) {
            assertThat(((CpuBackend) b).kernel().name()).isEqualTo("vector");
        }
        assertThatThrownBy(() -> ExpertBackends.create("cpu", "mkl"))
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessage("unknown cpu kernel 'mkl' (available: auto, vector, native)");
    }

    @Test
    void rejectsAnUnknownBackendNamingTheChoices() {
        assertThatThrownBy(() -> ExpertBackends.create("tpu"))
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessage("unknown backend 'tpu' (available: cpu, cuda, auto)");
    }

    @Test
    void autoFallsBackToCpuWithOneLogLineWhereNoGpuIsUsable() {
        CudaAvailability cuda = CudaAvailability.probe();
        assumeFalse(cuda.usable(), "this machine has a usable GPU");
        List<LogRecord> records = capture(() -> {
            try (ExpertBackend b = ExpertBackends.create("auto")) {
                assertThat(b.name()).isEqualTo("cpu");
            }
        });
        assertThat(records).singleElement().satisfies(r -> {
            assertThat(r.getMessage()).isEqualTo("backend auto: using cpu (" + cuda.description() + ")");
            assertThat(r.getThrown()).isNull();
        });
    }

    @Test
    void cudaFailsWithOneClearMessageWhereNoGpuIsUsable() {
        CudaAvailability cuda = CudaAvailability.probe();
        assumeFalse(cuda.usable(), "this machine has a usable GPU");
        assertThat(cuda.description()).doesNotContain("\n").isNotBlank();
        assertThatThrownBy(() -> ExpertBackends.create("cuda"))
                .isInstanceOf(IllegalStateException.class)
                .hasMessage("backend cuda is unavailable: " + cuda.description()
                        + " (use --backend cpu, or --backend auto to fall back to cpu)")
                .hasNoCause();
    }

    @Test
    void autoPicksCudaWhereAGpuIsUsable() {
        assumeTrue(CudaAvailability.probe().usable(), "no usable GPU here");
        List<LogRecord> records = capture(() -> {
            try (ExpertBackend b = ExpertBackends.create("auto")) {
                assertThat(b.name()).isEqualTo("cuda");
            }
        });
        assertThat(records).singleElement().satisfies(r -> assertThat(r.getMessage()).startsWith("backend auto: using cuda on "));
    }

    @Test
    void workerConfigAcceptsEveryBackendNameAndRejectsOthers() {
        var assignment = new ExpertAssignment(Map.of(0, Set.of(0)));
        WorkerConfig base = WorkerConfig.defaults("w", Path.of("model"), assignment);
        for (String name : ExpertBackends.NAMES) {
            var c = new WorkerConfig("w", base.host(), 0, base.modelDir(), assignment, name, base.coalesceWindow(),
                    base.maxInboundMessageBytes(), base.maxBatchesInFlightPerStream(), null, WorkerConfig.DEFAULT_MEMORY_BYTES, -1, true);
            assertThat(c.backend()).isEqualTo(name);
        }
        assertThatThrownBy(() -> new WorkerConfig("w", base.host(), 0, base.modelDir(), assignment, "gpu",
                base.coalesceWindow(), base.maxInboundMessageBytes(), base.maxBatchesInFlightPerStream(), null, WorkerConfig.DEFAULT_MEMORY_BYTES, -1, true))
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessage("unknown backend 'gpu' (available: cpu, cuda, auto)");
    }

    private static List<LogRecord> capture(Runnable action) {
        List<LogRecord> records = new ArrayList<>();
        Handler handler = new Handler() {
            @Override
            public void publish(LogRecord r) {
                records.add(r);
            }

            @Override
            public void flush() {}

            @Override
            public void close() {}
        };
        LOG.addHandler(handler);
        try {
            action.run();
        } finally {
            LOG.removeHandler(handler);
        }
        return records;
    }
}
