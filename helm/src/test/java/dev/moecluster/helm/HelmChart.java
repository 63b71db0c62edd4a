package dev.moecluster.helm;

import static java.util.Objects.requireNonNull;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import com.fasterxml.jackson.dataformat.yaml.YAMLFactory;
import com.marcnuri.helm.Helm;
import com.marcnuri.helm.InstallCommand;
import com.marcnuri.helm.LintResult;
import com.marcnuri.helm.TemplateCommand;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Comparator;
import java.util.Map;
import java.util.stream.Stream;

/**
 * The chart in helm/moe-cluster, run through real Helm in-process (helm-java's native library):
 * {@code helm lint} and {@code helm template}, with the chart's defaults or a values file on top.
 */
final class HelmChart {
    /** Release and namespace the tests and the plain manifests in deploy/k8s render with. */
    static final String RELEASE = "moe";
    static final String NAMESPACE = "moe";

    private static final ObjectMapper YAML = new ObjectMapper(new YAMLFactory());

    private final Path dir;

    private HelmChart(Path dir) {
        this.dir = requireNonNull(dir, "dir is null");
    }

    /** The chart this module ships, located by the build (system property {@code moe.chart.dir}). */
    static HelmChart moeCluster() {
        return new HelmChart(Path.of(requireNonNull(System.getProperty("moe.chart.dir"),
                "system property moe.chart.dir is not set: run the tests through ./mvnw -pl helm")).toAbsolutePath().normalize());
    }

    /** The repository root (system property {@code moe.repo.root}), for deploy/. */
    static Path repoRoot() {
        return Path.of(requireNonNull(System.getProperty("moe.repo.root"), "system property moe.repo.root is not set"))
                .toAbsolutePath().normalize();
    }

    Path dir() {
        return dir;
    }

    Path productionValues() {
        return dir.resolve("values-production.yaml");
    }

    /** {@code helm lint --strict} with the chart's own values.yaml. */
    LintResult lint() {
        return new Helm(dir).lint().strict().call();
    }

    /**
     * {@code helm lint --strict} with {@code valuesFile} over the defaults. helm-java's lint takes no
     * values file, so this lints a copy of the chart whose values.yaml is the defaults merged with
     * the file the way Helm merges them (maps key by key, everything else replaced).
     */
    LintResult lint(Path valuesFile) throws IOException {
        Path copy = Files.createTempDirectory("moe-chart-lint-");
        try {
            Path chart = copy.resolve(dir.getFileName());
            copyTree(dir, chart);
            JsonNode merged = merge(YAML.readTree(dir.resolve("values.yaml").toFile()), YAML.readTree(valuesFile.toFile()));
            YAML.writeValue(chart.resolve("values.yaml").toFile(), merged);
            return new Helm(chart).lint().strict().call();
        } finally {
            deleteTree(copy);
        }
    }

    /** {@code helm template moe -n moe} with the defaults. */
    String template() {
        return template(null, Map.of());
    }

    /**
     * {@code helm template moe -n moe [-f valuesFile] [--set key=value ...]}.
     *
     * @throws IllegalStateException with Helm's message when rendering fails (e.g. a {@code fail} in a template)
     */
    String template(Path valuesFile, Map<String, Object> sets) {
        TemplateCommand command = new Helm(dir).template().withName(RELEASE).withNamespace(NAMESPACE);
        if (valuesFile != null) {
            command = command.withValuesFile(valuesFile);
        }
        for (var set : sets.entrySet()) {
            command = command.set(set.getKey(), set.getValue());
        }
        return command.call();
    }

    /**
     * What {@code helm install --dry-run=client} prints for this chart (release summary and NOTES.txt),
     * with {@code valuesFile} over the defaults when not null.
     */
    String installOutput(Path valuesFile) {
        InstallCommand command = new Helm(dir).install().withName(RELEASE).withNamespace(NAMESPACE).clientOnly().dryRun();
        if (valuesFile != null) {
            command = command.withValuesFile(valuesFile);
        }
        return command.call().getOutput();
    }

    /** Helm's coalescing of values: maps merge key by key, the override wins everywhere else. */
    private static JsonNode merge(JsonNode base, JsonNode override) {
        if (!(base instanceof ObjectNode baseObject) || !(override instanceof ObjectNode)) {
            return override;
        }
        ObjectNode merged = baseObject.deepCopy();
        override.properties().forEach(e -> merged.set(e.getKey(),
                merged.has(e.getKey()) ? merge(merged.get(e.getKey()), e.getValue()) : e.getValue()));
        return merged;
    }

    private static void copyTree(Path from, Path to) throws IOException {
        try (Stream<Path> paths = Files.walk(from)) {
            for (Path p : (Iterable<Path>) paths::iterator) {
                Files.copy(p, to.resolve(from.relativize(p).toString()));
            }
        }
    }

    private static void deleteTree(Path root) throws IOException {
        try (Stream<Path> paths = Files.walk(root)) {
            paths.sorted(Comparator.reverseOrder()).forEach(p -> {
                try {
                    Files.delete(p);
                } catch (IOException e) {
                    throw new UncheckedIOException(e);
                }
            });
        }
    }
}
