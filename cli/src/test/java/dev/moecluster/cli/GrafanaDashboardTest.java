package dev.moecluster.cli;

import static org.assertj.core.api.Assertions.assertThat;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import java.io.File;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * Checks deploy/grafana/moe-cluster.json against what a running local cluster really exports: every
 * series and label its PromQL names must be in the scraped exposition of the router, the workers or
 * the coordinator after MoeForward and Generate traffic, and every moe_ series must be on some panel.
 */
class GrafanaDashboardTest {
    /** Grafana's built-in variables. */
    private static final Set<String> GRAFANA_VARIABLES = Set.of("__rate_interval", "__interval", "__range", "__range_s");
    private static final Pattern VARIABLE = Pattern.compile("\\$\\{?(\\w+)");
    private static final Pattern LEGEND_LABEL = Pattern.compile("\\{\\{\\s*(\\w+)\\s*}}");
    private static final Pattern LABEL_VALUES = Pattern.compile("label_values\\((.*),\\s*(\\w+)\\s*\\)");

    private static LocalCluster cluster;
    private static Exposition scraped;

    @BeforeAll
    static void startClusterWithTraffic() throws Exception {
        cluster = Clusters.coordinatedWithTraffic(3);
        scraped = Exposition.scrapeAll(cluster);
    }

    @AfterAll
    static void stopCluster() {
        if (cluster != null) {
            cluster.close();
        }
    }

    @Test
    void everyExpressionNamesSeriesAndLabelsTheClusterExports() throws IOException {
        Map<String, String> queries = queries(dashboard());
        assertThat(queries).hasSizeGreaterThan(40);
        List<String> problems = new ArrayList<>();
        queries.forEach((where, expr) -> problems.addAll(scraped.missingFor(where, expr, Set.of())));
        assertThat(problems).isEmpty();
    }

    @Test
    void legendsUseLabelsTheirSeriesCarry() throws IOException {
        List<String> problems = new ArrayList<>();
        for (JsonObject panel : panels(dashboard())) {
            for (JsonElement t : panel.getAsJsonArray("targets")) {
                JsonObject target = t.getAsJsonObject();
                if (!target.has("legendFormat")) {
                    continue;
                }
                Set<String> labels = new HashSet<>(Exposition.TARGET_LABELS);
                PromQl.seriesNames(target.get("expr").getAsString()).forEach(n -> labels.addAll(scraped.labelNames(n)));
                Matcher m = LEGEND_LABEL.matcher(target.get("legendFormat").getAsString());
                while (m.find()) {
                    if (!labels.contains(m.group(1))) {
                        problems.add(panel.get("title").getAsString() + ": legend label " + m.group(1));
                    }
                }
            }
        }
        assertThat(problems).isEmpty();
    }

    @Test
    void everyExportedMoeSeriesIsOnAPanel() throws IOException {
        Set<String> referenced = new HashSet<>();
        queries(dashboard()).values().forEach(expr -> PromQl.seriesNames(expr).forEach(n -> referenced.add(family(n))));
        Set<String> missing = new TreeSet<>();
        scraped.names().stream().filter(n -> n.startsWith("moe_")).map(GrafanaDashboardTest::family)
                .filter(f -> !referenced.contains(f)).forEach(missing::add);
        assertThat(missing).as("moe_ series without a panel").isEmpty();
        assertThat(referenced).contains("moe_router_time_to_first_token_seconds", "moe_router_inter_token_latency_seconds",
                "moe_router_dispatch_duration_seconds", "moe_worker_rows_total", "moe_coordinator_balancedness",
                "moe_router_failovers_total", "jvm_memory_used_bytes", "jvm_gc_collection_seconds");
    }

    @Test
    void isAGrafanaDashboardOverAPrometheusDatasourceVariable() throws IOException {
        JsonObject d = dashboard();
        assertThat(d.get("title").getAsString()).isEqualTo("moe-cluster");
        assertThat(d.get("uid").getAsString()).matches("[a-zA-Z0-9_-]{1,40}");
        assertThat(d.get("schemaVersion").getAsInt()).isBetween(36, 41);

        Map<String, JsonObject> variables = new LinkedHashMap<>();
        for (JsonElement v : d.getAsJsonObject("templating").getAsJsonArray("list")) {
            variables.put(v.getAsJsonObject().get("name").getAsString(), v.getAsJsonObject());
        }
        assertThat(variables).containsKeys("datasource", "namespace");
        assertThat(variables.get("datasource").get("type").getAsString()).isEqualTo("datasource");
        assertThat(variables.get("datasource").get("query").getAsString()).isEqualTo("prometheus");

        List<JsonObject> panels = panels(d);
        assertThat(panels).hasSizeGreaterThan(30);
        Set<Integer> ids = new HashSet<>();
        Set<String> rows = new LinkedHashSet<>();
        for (JsonElement e : d.getAsJsonArray("panels")) {
            JsonObject p = e.getAsJsonObject();
            assertThat(ids.add(p.get("id").getAsInt())).as("unique id %s", p.get("id")).isTrue();
            if (p.get("type").getAsString().equals("row")) {
                rows.add(p.get("title").getAsString());
            }
        }
        assertThat(rows).containsExactly("Overview", "Latency", "Experts", "Workers", "Failover and control plane", "Wire",
                "JVM");
        for (JsonObject p : panels) {
            String title = p.get("title").getAsString();
            assertThat(datasourceUid(p)).as("datasource of panel '%s'", title).isEqualTo("${datasource}");
            assertThat(p.getAsJsonObject("gridPos").get("w").getAsInt()).as("width of '%s'", title).isBetween(1, 24);
            assertThat(p.getAsJsonArray("targets")).as("targets of '%s'", title).isNotEmpty();
            for (JsonElement t : p.getAsJsonArray("targets")) {
                assertThat(datasourceUid(t.getAsJsonObject())).as("target datasource in '%s'", title).isEqualTo("${datasource}");
            }
        }
        queries(d).forEach((where, expr) -> {
            Matcher m = VARIABLE.matcher(expr);
            while (m.find()) {
                assertThat(variables.containsKey(m.group(1)) || GRAFANA_VARIABLES.contains(m.group(1)))
                        .as("%s uses undefined variable $%s", where, m.group(1)).isTrue();
            }
        });
    }

    @Test
    void promtoolParsesEveryExpressionWhenInstalled() throws Exception {
        Path promtool = onPath("promtool");
        assumeTrue(promtool != null, "promtool is not on the PATH");
        JsonArray rules = new JsonArray();
        for (String expr : queries(dashboard()).values()) {
            JsonObject rule = new JsonObject();
            rule.addProperty("record", "dashboard:expr" + rules.size());
            rule.addProperty("expr", expr.replace("$__rate_interval", "1m").replace("$__interval", "1m")
                    .replace("$__range", "1h").replaceAll("\\$\\{?\\w+}?", ".*"));
            rules.add(rule);
        }
        JsonObject group = new JsonObject();
        group.addProperty("name", "moe-cluster-dashboard");
        group.add("rules", rules);
        JsonObject file = new JsonObject();
        file.add("groups", new JsonArray());
        file.getAsJsonArray("groups").add(group);
        Path rulesFile = Files.createTempFile("moe-cluster-dashboard", ".yml");
        try {
            Files.writeString(rulesFile, file.toString()); // JSON is YAML
            Process p = new ProcessBuilder(promtool.toString(), "check", "rules", rulesFile.toString())
                    .redirectErrorStream(true).start();
            String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
            assertThat(p.waitFor()).as(out).isZero();
            assertThat(out).contains("SUCCESS: " + rules.size() + " rules found");
        } finally {
            Files.deleteIfExists(rulesFile);
        }
    }

    @Test
    void tokenizerFindsSeriesNotFunctionsLabelsOrDurations() {
        assertThat(PromQl.seriesNames("histogram_quantile(0.99, sum by (le, worker) (rate(moe_router_dispatch_duration_seconds_bucket"
                + "{namespace=~\"$namespace\", instance=~\"$router\"}[$__rate_interval])))"))
                .containsExactly("moe_router_dispatch_duration_seconds_bucket");
        assertThat(PromQl.seriesNames("sum(a{x=\"rate(b)\"} * on (namespace, instance) group_left () c) / ignoring(code) "
                + "count(d offset 5m) > bool 1e3 and sum(e)by(le)")).containsExactly("a", "c", "d", "e");
        assertThat(PromQl.seriesNames("changes(max(up)[2m:]) > 0")).containsExactly("up");
        assertThat(PromQl.seriesNames("max(a{j=\"x\"}) - on () group_right b > 0 or (absent(c) - 1)"))
                .containsExactly("a", "b", "c");
        assertThat(PromQl.groupingLabels("sum by (code) (a) / ignoring (code) group_left sum(a)")).containsExactly("code");
        assertThat(PromQl.matcherLabels("a{x=\"1\", y!~\"2\"} + b{z=\"}\"}"))
                .isEqualTo(Map.of("a", Set.of("x", "y"), "b", Set.of("z")));
        assertThat(PromQl.groupingLabels("sum by (le, worker) (a) / on(instance) group_left(pool) b"))
                .containsExactlyInAnyOrder("le", "worker", "instance", "pool");
    }

    /** A histogram's or summary's samples belong to one family; counters keep {@code _total}. */
    private static String family(String series) {
        return series.replaceFirst("_(bucket|count|sum)$", "");
    }

    private static Path onPath(String command) {
        for (String dir : System.getenv().getOrDefault("PATH", "").split(File.pathSeparator)) {
            Path candidate = Path.of(dir, command);
            if (!dir.isEmpty() && Files.isExecutable(candidate)) {
                return candidate;
            }
        }
        return null;
    }

    private static String datasourceUid(JsonObject o) {
        assertThat(o.has("datasource")).isTrue();
        JsonObject ds = o.getAsJsonObject("datasource");
        assertThat(ds.get("type").getAsString()).isEqualTo("prometheus");
        return ds.get("uid").getAsString();
    }

    private static JsonObject dashboard() throws IOException {
        Path dir = Path.of("").toAbsolutePath();
        while (dir != null && !Files.exists(dir.resolve("deploy/grafana/moe-cluster.json"))) {
            dir = dir.getParent();
        }
        assertThat(dir).as("deploy/grafana/moe-cluster.json above the working directory").isNotNull();
        return JsonParser.parseString(Files.readString(dir.resolve("deploy/grafana/moe-cluster.json"))).getAsJsonObject();
    }

    /** Every panel that is not a row, whether at the top level or inside a (collapsed) row. */
    private static List<JsonObject> panels(JsonObject dashboard) {
        List<JsonObject> out = new ArrayList<>();
        collect(dashboard.getAsJsonArray("panels"), out);
        return out;
    }

    private static void collect(JsonArray panels, List<JsonObject> out) {
        for (JsonElement e : panels) {
            JsonObject p = e.getAsJsonObject();
            if (p.get("type").getAsString().equals("row")) {
                if (p.has("panels")) {
                    collect(p.getAsJsonArray("panels"), out);
                }
            } else {
                out.add(p);
            }
        }
    }

    /** Every PromQL query, keyed by where it is: panel targets, annotations and the variables' label_values series. */
    private static Map<String, String> queries(JsonObject dashboard) {
        Map<String, String> out = new LinkedHashMap<>();
        for (JsonObject p : panels(dashboard)) {
            for (JsonElement t : p.getAsJsonArray("targets")) {
                JsonObject target = t.getAsJsonObject();
                out.put("panel '" + p.get("title").getAsString() + "' " + target.get("refId").getAsString(),
                        target.get("expr").getAsString());
            }
        }
        for (JsonElement a : dashboard.getAsJsonObject("annotations").getAsJsonArray("list")) {
            if (a.getAsJsonObject().has("expr")) {
                out.put("annotation '" + a.getAsJsonObject().get("name").getAsString() + "'",
                        a.getAsJsonObject().get("expr").getAsString());
            }
        }
        for (JsonElement v : dashboard.getAsJsonObject("templating").getAsJsonArray("list")) {
            JsonObject variable = v.getAsJsonObject();
            if (variable.get("type").getAsString().equals("query")) {
                Matcher m = LABEL_VALUES.matcher(variable.getAsJsonObject("query").get("query").getAsString());
                assertThat(m.matches()).as("variable %s is label_values(series, label)", variable.get("name")).isTrue();
                out.put("variable $" + variable.get("name").getAsString() + " series", m.group(1));
                out.put("variable $" + variable.get("name").getAsString() + " label",
                        "count by (" + m.group(2) + ") (" + m.group(1) + ")");
            }
        }
        return out;
    }
}
