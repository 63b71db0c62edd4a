package dev.moecluster.helm;

import static org.assertj.core.api.Assertions.assertThat;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.io.File;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import org.junit.jupiter.api.Test;

/**
 * deploy/prometheus through promtool, when it is on the PATH (skipped otherwise): the rules file loads
 * ({@code check rules}) and the unit tests in tests.yaml pass ({@code test rules}: alerts quiet before their
 * {@code for:}, firing with the expected labels and annotations after). The chart's PrometheusRule as the
 * production values render it (the release's matchers) loads too.
 */
class PrometheusRulesTest {
    private final Path dir = HelmChart.repoRoot().resolve("deploy/prometheus");

    @Test
    void promtoolChecksTheRulesFile() throws Exception {
        String out = promtool("check", "rules", dir.resolve("moe-cluster-rules.yaml").toString());
        assertThat(out).contains("SUCCESS: 13 rules found");
    }

    @Test
    void promtoolUnitTestsPass() throws Exception {
        String out = promtool("test", "rules", dir.resolve("tests.yaml").toString());
        assertThat(out).contains("SUCCESS");
    }

    @Test
    void promtoolChecksTheChartsRulesAsProductionRendersThem() throws Exception {
        HelmChart chart = HelmChart.moeCluster();
        Path rules = Files.createTempFile("moe-cluster-production-rules", ".yaml");
        try {
            Files.writeString(rules, PlainManifestsTest.ruleSpec(chart.template(chart.productionValues(), Map.of())));
            assertThat(Files.readString(rules)).contains("namespace=\"moe\", job=~\"moe-moe-cluster-coordinator|");
            String out = promtool("check", "rules", rules.toString());
            assertThat(out).contains("SUCCESS: 13 rules found");
        } finally {
            Files.delete(rules);
        }
    }

    /** Runs promtool in deploy/prometheus and returns its output; fails on a non-zero exit. */
    private String promtool(String... args) throws IOException, InterruptedException {
        Path promtool = onPath("promtool");
        assumeTrue(promtool != null, "promtool is not on the PATH");
        String[] command = new String[args.length + 1];
        command[0] = promtool.toString();
        System.arraycopy(args, 0, command, 1, args.length);
        Process p = new ProcessBuilder(command).directory(dir.toFile()).redirectErrorStream(true).start();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertThat(p.waitFor()).as(out).isZero();
        return out;
    }

    private static Path onPath(String command) {
        for (String d : System.getenv().getOrDefault("PATH", "").split(File.pathSeparator)) {
            Path candidate = Path.of(d, command);
            if (!d.isEmpty() && Files.isExecutable(candidate)) {
                return candidate;
            }
        }
        return null;
    }
}
