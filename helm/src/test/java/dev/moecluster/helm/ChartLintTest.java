package dev.moecluster.helm;

import static org.assertj.core.api.Assertions.assertThat;

import com.marcnuri.helm.LintResult;
import org.junit.jupiter.api.Test;

/** {@code helm lint --strict} passes for the chart's defaults and for the production example. */
class ChartLintTest {
    private final HelmChart chart = HelmChart.moeCluster();

    @Test
    void lintPassesWithDefaultValues() {
        assertLintClean(chart.lint());
    }

    @Test
    void lintPassesWithProductionValues() throws Exception {
        assertLintClean(chart.lint(chart.productionValues()));
    }

    private static void assertLintClean(LintResult result) {
        assertThat(result.isFailed()).as("lint failed: %s", result.getMessages()).isFalse();
        assertThat(result.getMessages()).noneMatch(m -> m.contains("[ERROR]"));
        assertThat(result.getMessages()).noneMatch(m -> m.contains("[WARNING]"));
    }
}
