package dev.moecluster.helm;

import static dev.moecluster.helm.ChartDefaultValuesTest.WORKLOADS;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatCode;

import dev.moecluster.cli.Moe;
import io.fabric8.kubernetes.api.model.Container;
import io.fabric8.kubernetes.api.model.EnvVar;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;
import picocli.CommandLine;
import picocli.CommandLine.ParseResult;

/**
 * Every container's args, as the chart renders them, parse with the real {@code moe} command line:
 * a flag the chart passes and the CLI does not know (or a value of the wrong type, or two flags that
 * exclude each other) fails here instead of in a crash-looping pod.
 */
class ChartArgsTest {
    /** Plausible values for what the kubelet substitutes for {@code $(VAR)} from the container's env. */
    private static final Map<String, String> POD_ENV = Map.of("POD_IP", "10.1.2.3", "POD_NAME", "moe-moe-cluster-worker-0");
    private static final Pattern VAR = Pattern.compile("\\$\\(([A-Z_]+)\\)");

    private final HelmChart chart = HelmChart.moeCluster();

    @Test
    void defaultValuesArgsParse() {
        checkAll(RenderedObjects.parse(chart.template()));
    }

    @Test
    void productionValuesArgsParse() {
        checkAll(RenderedObjects.parse(chart.template(chart.productionValues(), Map.of())));
    }

    @Test
    void securityValuesArgsParse() {
        checkAll(RenderedObjects.parse(chart.template(null, Map.of("tls.enabled", true, "tls.secretName", "my-tls",
                "security.placementSigningSecret", "moe-signing", "security.adminTokenSecret", "moe-admin",
                "security.adminReadToken", true, "security.dataPlaneTokenSecret", "moe-data-plane",
                "security.allowedClients[0]", "router"))));
    }

    @Test
    void aFlagTheCliDoesNotKnowIsCaught() {
        assertThatCode(() -> parse(List.of("worker", "--coordinators", "c:5701", "--no-such-flag", "1")))
                .hasMessageContaining("--no-such-flag");
    }

    private void checkAll(RenderedObjects objects) {
        for (String workload : WORKLOADS) {
            Container c = objects.container(workload);
            List<String> env = c.getEnv().stream().map(EnvVar::getName).toList();
            List<String> args = c.getArgs().stream().map(a -> substitute(a, env)).toList();
            ParseResult parsed = parse(args);
            ParseResult sub = parsed.subcommand();
            assertThat(sub).as(workload + " runs a moe subcommand").isNotNull();
            assertThat(sub.commandSpec().name()).isEqualTo(args.getFirst());
            assertThat(sub.matchedOptions()).as(workload + " passes its flags").isNotEmpty();
            if (args.contains("--model")) {
                // --model also takes a hub id; the chart mounts a directory, so it passes an absolute path
                String model = sub.matchedOptionValue("--model", null);
                assertThat(Path.of(model)).as(workload + " model directory").isAbsolute();
            }
        }
    }

    private static ParseResult parse(List<String> args) {
        CommandLine cl = Moe.commandLine();
        return cl.parseArgs(args.toArray(String[]::new));
    }

    /** {@code $(VAR)} replaced as the kubelet would; each must be in the container's env, or it stays literal. */
    private static String substitute(String arg, List<String> env) {
        Matcher m = VAR.matcher(arg);
        StringBuilder out = new StringBuilder();
        while (m.find()) {
            assertThat(env).as("$(%s) in the args is defined in the container's env", m.group(1)).contains(m.group(1));
            m.appendReplacement(out, Matcher.quoteReplacement(POD_ENV.getOrDefault(m.group(1), "value")));
        }
        return m.appendTail(out).toString();
    }
}
