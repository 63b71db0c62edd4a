package dev.moecluster.cli;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import dev.moecluster.worker.ExpertWorker;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import java.util.function.Predicate;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * The samples of a Prometheus text exposition (comments skipped, no timestamps expected), scraped from
 * a component's {@code /metrics} on loopback; shared by the tests that read a running cluster's series.
 */
record Exposition(List<Exposition.Sample> samples) {
    /** Labels Prometheus adds when it scrapes (static targets, pod discovery or a ServiceMonitor). */
    static final Set<String> TARGET_LABELS = Set.of("namespace", "instance", "job", "pod", "container", "service",
            "endpoint");
    private static final HttpClient HTTP = HttpClient.newHttpClient();
    private static final Pattern LINE = Pattern.compile("([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\\{(.*)\\})?\\s+(\\S+)");
    private static final Pattern LABEL = Pattern.compile("([a-zA-Z_][a-zA-Z0-9_]*)=\"((?:[^\"\\\\]|\\\\.)*)\"");

    /** One sample: series name, labels, value. */
    record Sample(String name, Map<String, String> labels, double value) {
        boolean is(String label, String v) {
            return v.equals(labels.get(label));
        }
    }

    /** {@code GET http://127.0.0.1:port/metrics}, asserting a 200 and a parsable body. */
    static Exposition scrape(int port) throws IOException, InterruptedException {
        assertThat(port).isPositive();
        HttpResponse<String> r = HTTP.send(HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + port + "/metrics")).build(),
                HttpResponse.BodyHandlers.ofString());
        assertThat(r.statusCode()).isEqualTo(200);
        return parse(r.body());
    }

    static Exposition parse(String text) {
        List<Sample> samples = new ArrayList<>();
        for (String line : text.split("\n")) {
            if (line.isBlank() || line.startsWith("#")) {
                continue;
            }
            Matcher m = LINE.matcher(line);
            assertThat(m.matches()).as("exposition line '%s'", line).isTrue();
            Map<String, String> labels = new LinkedHashMap<>();
            if (m.group(2) != null) {
                Matcher l = LABEL.matcher(m.group(2));
                while (l.find()) {
                    labels.put(l.group(1), l.group(2));
                }
            }
            samples.add(new Sample(m.group(1), labels, Double.parseDouble(m.group(3))));
        }
        return new Exposition(samples);
    }

    /** The sum of {@code name}'s samples that pass {@code filter}; fails when no sample has that name. */
    double sum(String name, Predicate<Sample> filter) {
        assertThat(names()).as("series %s", name).contains(name);
        return samples.stream().filter(s -> s.name().equals(name) && filter.test(s)).mapToDouble(Sample::value).sum();
    }

    List<String> names() {
        return samples.stream().map(Sample::name).distinct().toList();
    }

    /** Label names {@code name}'s samples carry (empty when there is no such sample). */
    Set<String> labelNames(String name) {
        Set<String> out = new TreeSet<>();
        samples.stream().filter(s -> s.name().equals(name)).forEach(s -> out.addAll(s.labels().keySet()));
        return out;
    }

    /**
     * Every component of {@code cluster} scraped once (router, workers, coordinator when it runs one) and merged,
     * as Prometheus holds them after scraping all of them.
     */
    static Exposition scrapeAll(LocalCluster cluster) throws IOException, InterruptedException {
        List<Exposition> parts = new ArrayList<>();
        parts.add(scrape(cluster.router().metricsPort()));
        for (ExpertWorker w : cluster.workers()) {
            parts.add(scrape(w.metricsPort()));
        }
        if (cluster.coordinator() != null) {
            parts.add(scrape(cluster.coordinator().metricsPort()));
        }
        return merge(parts);
    }

    /**
     * What PromQL {@code expr} reads that this exposition lacks, each problem prefixed with {@code where}: no series
     * at all, a series nothing exports (other than {@code otherSeries}, those Prometheus makes itself such as
     * {@code up}), a label a selector matches on that its series does not carry, a grouping label that none of the
     * expression's series carries. The scrape target labels ({@link #TARGET_LABELS}) count as carried everywhere.
     */
    List<String> missingFor(String where, String expr, Set<String> otherSeries) {
        List<String> problems = new ArrayList<>();
        Set<String> exported = new HashSet<>(names());
        Set<String> names = PromQl.seriesNames(expr);
        if (names.isEmpty()) {
            problems.add(where + ": names no series: " + expr);
        }
        Set<String> labelsOfExpr = new HashSet<>(TARGET_LABELS);
        for (String name : names) {
            if (!exported.contains(name) && !otherSeries.contains(name)) {
                problems.add(where + ": " + name + " is not exported");
            }
            labelsOfExpr.addAll(labelNames(name));
        }
        PromQl.matcherLabels(expr).forEach((name, labels) -> labels.forEach(label -> {
            if (!TARGET_LABELS.contains(label) && !labelNames(name).contains(label)) {
                problems.add(where + ": " + name + " has no label " + label);
            }
        }));
        for (String label : PromQl.groupingLabels(expr)) {
            if (!labelsOfExpr.contains(label)) {
                problems.add(where + ": groups by " + label + ", which none of " + names + " has");
            }
        }
        return problems;
    }

    /** Every component's samples in one exposition, as Prometheus holds them after scraping all of them. */
    static Exposition merge(List<Exposition> parts) {
        List<Sample> all = new ArrayList<>();
        parts.forEach(p -> all.addAll(p.samples()));
        return new Exposition(List.copyOf(all));
    }
}
