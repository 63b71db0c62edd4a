package dev.moecluster.helm;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.fabric8.kubernetes.api.model.GenericKubernetesResource;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;

/**
 * The PrometheusRule ({@code metrics.prometheusRule}): off by default; when on, every alert is complete
 * (for, severity, summary, description, a runbook section that exists), keeps to the release's targets,
 * and takes its thresholds from values.
 */
class ChartPrometheusRuleTest {
    private static final String RELEASE_SCOPE =
            "namespace=\"moe\", job=~\"moe-moe-cluster-coordinator|moe-moe-cluster-worker|moe-moe-cluster-router\"";
    /** A series selector: name and matchers (PromQL strings hold no braces in these rules). */
    private static final Pattern SELECTOR = Pattern.compile("([a-zA-Z_:][a-zA-Z0-9_:]*)\\{([^}]*)}");
    private static final Pattern HEADING = Pattern.compile("(?m)^#{2,4} (\\S+)\\s*$");

    private final HelmChart chart = HelmChart.moeCluster();

    private GenericKubernetesResource rule(Map<String, Object> sets) {
        List<?> rules = RenderedObjects.parse(chart.template(null, sets)).ofKind("PrometheusRule");
        assertThat(rules).hasSize(1);
        return (GenericKubernetesResource) rules.getFirst();
    }

    private static List<Map<String, Object>> alerts(GenericKubernetesResource rule) {
        List<Map<String, Object>> groups = rule.get("spec", "groups");
        List<Map<String, Object>> out = new ArrayList<>();
        for (Map<String, Object> group : groups) {
            @SuppressWarnings("unchecked")
            List<Map<String, Object>> rules = (List<Map<String, Object>>) group.get("rules");
            out.addAll(rules);
        }
        return out;
    }

    private static Map<String, Object> alert(GenericKubernetesResource rule, String name) {
        return alerts(rule).stream().filter(a -> name.equals(a.get("alert"))).findFirst()
                .orElseThrow(() -> new AssertionError("no alert " + name));
    }

    @SuppressWarnings("unchecked")
    private static Map<String, Object> labels(Map<String, Object> alert) {
        return (Map<String, Object>) alert.get("labels");
    }

    @Test
    void rendersOnlyWhenEnabled() {
        assertThat(RenderedObjects.parse(chart.template()).ofKind("PrometheusRule")).isEmpty();
        assertThat(RenderedObjects.parse(chart.template(null, Map.of("metrics.serviceMonitor.enabled", true)))
                .ofKind("PrometheusRule")).isEmpty();
    }

    @Test
    void carriesTheReleaseLabelsAndTheExtraOnes() {
        GenericKubernetesResource rule = rule(Map.of("metrics.prometheusRule.enabled", true,
                "metrics.prometheusRule.labels.release", "kube-prometheus-stack"));
        assertThat(rule.getMetadata().getName()).isEqualTo("moe-moe-cluster");
        assertThat(rule.getMetadata().getNamespace()).isEqualTo("moe");
        assertThat(rule.getMetadata().getLabels()).containsEntry("app.kubernetes.io/instance", "moe")
                .containsEntry("app.kubernetes.io/name", "moe-cluster").containsEntry("app.kubernetes.io/managed-by", "Helm")
                .containsEntry("release", "kube-prometheus-stack");
    }

    @Test
    void everyAlertIsCompleteAndItsRunbookSectionExists() throws IOException {
        String readme = Files.readString(HelmChart.repoRoot().resolve("deploy/prometheus/README.md"));
        List<String> anchors = new ArrayList<>();
        Matcher h = HEADING.matcher(readme);
        while (h.find()) {
            anchors.add(h.group(1).toLowerCase());
        }
        List<Map<String, Object>> alerts = alerts(rule(Map.of("metrics.prometheusRule.enabled", true)));
        assertThat(alerts).extracting(a -> a.get("alert")).doesNotHaveDuplicates().contains("MoeClusterCoordinatorLeader",
                "MoeClusterWorkerDead", "MoeClusterExpertWithoutReplica", "MoeClusterExpertUnderReplicated",
                "MoeClusterBalancednessLow", "MoeClusterRouterErrors", "MoeClusterFailovers", "MoeClusterKvCacheNearlyFull",
                "MoeClusterGenerateQueue", "MoeClusterTimeToFirstTokenHigh", "MoeClusterRouterPlacementBehind",
                "MoeClusterTargetDown", "MoeClusterComponentDown");
        for (Map<String, Object> alert : alerts) {
            String name = (String) alert.get("alert");
            assertThat((String) alert.get("for")).as("for: of %s", name).matches("\\d+m");
            assertThat(labels(alert)).as("labels of %s", name).containsKey("severity");
            assertThat((String) labels(alert).get("severity")).isIn("critical", "warning");
            @SuppressWarnings("unchecked")
            Map<String, String> annotations = (Map<String, String>) alert.get("annotations");
            assertThat(annotations).as("annotations of %s", name).containsOnlyKeys("summary", "description", "runbook");
            // the value, or for up == 0 the target or job that is down
            assertThat(annotations.get("description")).as("description of %s names the value", name)
                    .containsPattern("\\{\\{ \\$(value|labels\\.instance|labels\\.job)");
            assertThat(annotations.get("runbook"))
                    .isEqualTo("https://github.com/moe-cluster/moe-cluster/blob/main/deploy/prometheus/README.md#"
                            + name.toLowerCase());
            assertThat(anchors).as("a section '%s' in deploy/prometheus/README.md", name).contains(name.toLowerCase());
        }
    }

    @Test
    void everySeriesIsScopedToTheRelease() {
        for (Map<String, Object> alert : alerts(rule(Map.of("metrics.prometheusRule.enabled", true)))) {
            String expr = (String) alert.get("expr");
            Matcher m = SELECTOR.matcher(expr);
            int selectors = 0;
            while (m.find()) {
                selectors++;
                assertThat(m.group(2)).as("%s in %s", m.group(1), alert.get("alert")).startsWith(RELEASE_SCOPE);
            }
            assertThat(selectors).as("selectors in %s", expr).isPositive();
            // every series name in the expression comes with matchers
            assertThat(expr.replaceAll(SELECTOR.pattern(), "")).doesNotContainPattern("moe_\\w+|\\bup\\b");
        }
    }

    @Test
    void aSelectorReplacesTheReleaseScope() {
        GenericKubernetesResource rule = rule(Map.of("metrics.prometheusRule.enabled", true,
                "metrics.prometheusRule.selector", "cluster=\"eu-1\""));
        assertThat((String) alert(rule, "MoeClusterTargetDown").get("expr")).isEqualTo("up{cluster=\"eu-1\"} == 0");
        assertThat((String) alert(rule, "MoeClusterWorkerDead").get("expr"))
                .isEqualTo("max(moe_coordinator_workers{cluster=\"eu-1\", state=\"dead\"}) > 0");
    }

    @Test
    void thresholdsFollowValues() throws IOException {
        GenericKubernetesResource defaults = rule(Map.of("metrics.prometheusRule.enabled", true));
        assertThat((String) alert(defaults, "MoeClusterRouterErrors").get("expr")).endsWith(" > 0.05");
        assertThat((String) alert(defaults, "MoeClusterKvCacheNearlyFull").get("expr")).endsWith(" > 0.9");
        assertThat((String) alert(defaults, "MoeClusterExpertUnderReplicated").get("expr")).endsWith(" < 1 > 0");
        assertThat(labels(alert(defaults, "MoeClusterExpertUnderReplicated"))).containsEntry("wanted_replicas", "1");

        // --set would pass 0.01 as a string: fractions go through a values file
        Path values = Files.createTempFile("moe-rule-values", ".yaml");
        GenericKubernetesResource tuned;
        try {
            Files.writeString(values, """
                    metrics:
                      prometheusRule:
                        enabled: true
                        ruleLabels: {team: inference}
                        thresholds:
                          errorRatio: 0.01
                          balancedness: 0.6
                          failoversPerSecond: 0.5
                          kvCacheUsage: 0.95
                          queuedRequests: 100
                          timeToFirstTokenSeconds: 1.5
                    coordinator: {minReplicas: 2}
                    workers: {replicas: 3}
                    """);
            List<?> rules = RenderedObjects.parse(chart.template(values, Map.of())).ofKind("PrometheusRule");
            assertThat(rules).hasSize(1);
            tuned = (GenericKubernetesResource) rules.getFirst();
        } finally {
            Files.delete(values);
        }
        assertThat((String) alert(tuned, "MoeClusterRouterErrors").get("expr")).endsWith(" > 0.01");
        assertThat((String) alert(tuned, "MoeClusterBalancednessLow").get("expr")).endsWith(" < 0.6");
        assertThat((String) alert(tuned, "MoeClusterFailovers").get("expr")).endsWith(" > 0.5");
        assertThat((String) alert(tuned, "MoeClusterKvCacheNearlyFull").get("expr")).endsWith(" > 0.95");
        assertThat((String) alert(tuned, "MoeClusterGenerateQueue").get("expr")).endsWith(" > 100");
        assertThat((String) alert(tuned, "MoeClusterTimeToFirstTokenHigh").get("expr")).endsWith(" > 1.5");
        // the wanted copies are the coordinators' --min-replicas
        Map<String, Object> underReplicated = alert(tuned, "MoeClusterExpertUnderReplicated");
        assertThat((String) underReplicated.get("expr")).endsWith(" < 2 > 0");
        assertThat(labels(underReplicated)).containsEntry("wanted_replicas", "2").containsEntry("team", "inference");
        assertThat(alerts(tuned)).allSatisfy(a -> assertThat(labels(a)).containsEntry("team", "inference"));
    }

    @Test
    void anUnknownThresholdIsRefused() {
        assertThatThrownBy(() -> chart.template(null, Map.of("metrics.prometheusRule.thresholds.errorRate", "0.1")))
                .hasMessageContaining("values don't meet the specifications of the schema")
                .hasMessageContaining("errorRate");
        assertThatThrownBy(() -> chart.template(null, Map.of("metrics.prometheusRule.thresholds.kvCacheUsage", 2)))
                .hasMessageContaining("kvCacheUsage");
    }
}
