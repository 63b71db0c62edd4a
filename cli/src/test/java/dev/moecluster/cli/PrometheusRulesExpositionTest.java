package dev.moecluster.cli;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.IOException;
import java.io.Reader;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.yaml.snakeyaml.Yaml;

/**
 * Holds deploy/prometheus/moe-cluster-rules.yaml (the chart's alerts) against what a running local cluster
 * exports after MoeForward and Generate traffic: every series and label an alert's expression names must be
 * in the scraped exposition of the router, the workers or the coordinator, apart from the series Prometheus
 * makes itself, and a label an annotation prints must be on the alert's series or among its own labels.
 */
class PrometheusRulesExpositionTest {
    /** Series Prometheus writes for every scrape target. */
    private static final Set<String> PROMETHEUS_SERIES = Set.of("up", "scrape_duration_seconds", "scrape_samples_scraped",
            "scrape_samples_post_metric_relabeling", "scrape_series_added");

    private static final Pattern PRINTED_LABEL = Pattern.compile("\\$labels\\.(\\w+)");

    private record Alert(String name, String expr, Map<String, String> labels, Map<String, String> annotations) {}

    private static LocalCluster cluster;
    private static Exposition scraped;

    @BeforeAll
    static void startClusterWithTraffic() throws Exception {
        cluster = Clusters.coordinatedWithTraffic(2);
        scraped = Exposition.scrapeAll(cluster);
    }

    @AfterAll
    static void stopCluster() {
        if (cluster != null) {
            cluster.close();
        }
    }

    @Test
    void everyAlertNamesSeriesAndLabelsTheClusterExports() throws IOException {
        List<Alert> alerts = alerts();
        assertThat(alerts).hasSizeGreaterThanOrEqualTo(13);
        List<String> problems = new ArrayList<>();
        alerts.forEach(a -> problems.addAll(scraped.missingFor(a.name(), a.expr(), PROMETHEUS_SERIES)));
        assertThat(problems).isEmpty();
    }

    @Test
    void annotationsPrintLabelsTheAlertsCarry() throws IOException {
        List<String> problems = new ArrayList<>();
        for (Alert a : alerts()) {
            Set<String> labels = new HashSet<>(Exposition.TARGET_LABELS);
            labels.addAll(a.labels().keySet());
            PromQl.seriesNames(a.expr()).forEach(n -> labels.addAll(scraped.labelNames(n)));
            a.annotations().forEach((key, text) -> {
                Matcher m = PRINTED_LABEL.matcher(text);
                while (m.find()) {
                    if (!labels.contains(m.group(1))) {
                        problems.add(a.name() + " " + key + " prints label " + m.group(1));
                    }
                }
            });
        }
        assertThat(problems).isEmpty();
    }

    @Test
    void theRulesReadEveryFamilyTheyAreAbout() throws IOException {
        Set<String> read = new HashSet<>();
        alerts().forEach(a -> read.addAll(PromQl.seriesNames(a.expr())));
        assertThat(read).contains("up", "moe_coordinator_leader", "moe_coordinator_workers", "moe_coordinator_min_replicas",
                "moe_coordinator_balancedness", "moe_coordinator_placement_epoch", "moe_router_requests_total",
                "moe_router_failovers_total", "moe_router_kv_cache_reserved_bytes", "moe_router_kv_cache_capacity_bytes",
                "moe_router_queued_requests", "moe_router_time_to_first_token_seconds_bucket", "moe_router_placement_epoch");
    }

    /** Every alerting rule of the rules file above the working directory. */
    @SuppressWarnings("unchecked")
    private static List<Alert> alerts() throws IOException {
        Path dir = Path.of("").toAbsolutePath();
        while (dir != null && !Files.exists(dir.resolve("deploy/prometheus/moe-cluster-rules.yaml"))) {
            dir = dir.getParent();
        }
        assertThat(dir).as("deploy/prometheus/moe-cluster-rules.yaml above the working directory").isNotNull();
        Map<String, Object> file;
        try (Reader r = Files.newBufferedReader(dir.resolve("deploy/prometheus/moe-cluster-rules.yaml"))) {
            file = new Yaml().load(r);
        }
        List<Alert> out = new ArrayList<>();
        for (Map<String, Object> group : (List<Map<String, Object>>) file.get("groups")) {
            for (Map<String, Object> rule : (List<Map<String, Object>>) group.get("rules")) {
                assertThat(rule).as("an alerting rule").containsKeys("alert", "expr");
                out.add(new Alert((String) rule.get("alert"), (String) rule.get("expr"),
                        (Map<String, String>) rule.getOrDefault("labels", Map.of()),
                        (Map<String, String>) rule.getOrDefault("annotations", Map.of())));
            }
        }
        return out;
    }
}
