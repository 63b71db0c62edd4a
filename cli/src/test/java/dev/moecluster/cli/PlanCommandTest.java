package dev.moecluster.cli;

import static org.assertj.core.api.Assertions.assertThat;

import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;

/** {@code moe plan} answers for the whole deployment: workers, routers, accelerators in all, and what sets the speed. */
class PlanCommandTest {

    private static Path example(String name) {
        Path dir = Path.of("").toAbsolutePath();
        while (dir != null && !Files.isDirectory(dir.resolve("deploy/examples"))) {
            dir = dir.getParent();
        }
        assertThat(dir).as("deploy/examples above the working directory").isNotNull();
        return dir.resolve("deploy/examples").resolve(name);
    }

    @Test
    void maverickOnH100sWithGpuRoutersGetsOneAcceleratorCount() {
        // 11 workers (CapacityPlannerTest); routers: 72 GiB usable - 26.38 GiB dense leaves room for 30
        // sequences of 8192 x 196,608 bytes (1.5 GiB), so 64 sequences take 3 routers: 14 accelerators.
        Object[] r = MoeCommandTest.run("plan", "--config", example("llama4-maverick").toString(),
                "--accelerator-memory", "80GiB", "--concurrency", "64", "--context", "8192", "--router-on", "gpu");
        String out = (String) r[1];
        assertThat(r[0]).as(out + r[2]).isEqualTo(0);
        assertThat(out).contains("In all: 14 accelerators of 80.0 GiB (11 expert workers + 3 routers)");
        assertThat(out).contains("Decode speed is set by the routers");
        assertThat(out).doesNotContain("fits one accelerator");
        assertThat(out).contains("not available yet");
    }

    @Test
    void cpuRoutersAreTheDefaultAndSayTheHostMemoryTheyNeed() {
        // Scout: dense (11,133,096,960 params) x 2 bytes + 64 x 8192 x 196,608 bytes of KV = 115.73 GiB
        long bytes = 11_133_096_960L * 2 + 64L * 8192 * 196_608;
        Object[] r = MoeCommandTest.run("plan", "--config", example("llama4-scout").toString(),
                "--accelerator-memory", "80GiB");
        String out = (String) r[1];
        assertThat(r[0]).as(out + r[2]).isEqualTo(0);
        assertThat(out).contains("In all: 3 accelerators of 80.0 GiB for the expert workers + 1 CPU router host with "
                + String.format(java.util.Locale.ROOT, "%.1f GiB", bytes / (double) (1L << 30)));
    }

    @Test
    void badRouterFlagsAreRefusedWithTheirNames() {
        Object[] r = MoeCommandTest.run("plan", "--config", example("llama4-scout").toString(),
                "--accelerator-memory", "80GiB", "--router-on", "tpu");
        assertThat(r[0]).isNotEqualTo(0);
        assertThat((String) r[2]).contains("router device must be cpu or gpu, got 'tpu'");
        Object[] help = MoeCommandTest.run("plan", "--help");
        for (String flag : new String[] {"--concurrency", "--context", "--router-on", "--router-host-memory",
                "--accelerator-bandwidth", "--host-bandwidth"}) {
            assertThat((String) help[1]).contains(flag);
        }
    }
}
