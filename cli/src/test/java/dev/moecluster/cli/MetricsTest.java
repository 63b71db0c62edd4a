package dev.moecluster.cli;

import static org.assertj.core.api.Assertions.assertThat;

import dev.moecluster.core.model.Architecture;
import dev.moecluster.core.model.ModelConfig;
import dev.moecluster.core.tensor.DType;
import dev.moecluster.core.tensor.FloatMatrix;
import dev.moecluster.proto.GenerateRequest;
import dev.moecluster.proto.SamplingParams;
import dev.moecluster.proto.TokenIds;
import dev.moecluster.worker.ExpertWorker;
import io.grpc.ManagedChannel;
import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.Predicate;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;

/** Scrapes every component of a running local cluster over HTTP and checks the series move with traffic. */
class MetricsTest {
    private static final HttpClient HTTP = HttpClient.newHttpClient();

    @Test
    void seriesMoveWithMoeForwardAndGenerateTraffic() throws Exception {
        Path dir = Clusters.tinyModel(Architecture.MIXTRAL);
        try (LocalCluster cluster = LocalCluster.start(LocalCluster.Options.of(dir, 3, 1).withCoordinator(true))) {
            ModelConfig cfg = cluster.model();
            int layer = cfg.moeLayerList().getFirst();
            int calls = 5;
            int tokens = 7;
            double workerRowsBefore = workerRows(cluster, layer);
            double routerRowsBefore = scrape(cluster.router().metricsPort()).sum("moe_router_routed_rows_total", s -> true);

            ManagedChannel channel = Clusters.channel(cluster.router().address());
            try {
                for (int i = 0; i < calls; i++) {
                    FloatMatrix x = Clusters.hidden(cfg, tokens, i, DType.F32);
                    Clusters.stub(channel).moeForward(Clusters.request(layer, x, DType.F32));
                }
            } finally {
                channel.shutdownNow();
            }

            long rows = (long) calls * tokens * cfg.expertsPerToken();
            assertThat(workerRows(cluster, layer) - workerRowsBefore).isEqualTo(rows);

            Exposition router = scrape(cluster.router().metricsPort());
            assertThat(router.sum("moe_router_requests_total", s -> s.is("method", "MoeForward") && s.is("code", "OK")))
                    .isEqualTo(calls);
            assertThat(router.sum("moe_router_requests_total", s -> !s.is("code", "OK"))).isZero();
            assertThat(router.sum("moe_router_routed_rows_total", s -> true) - routerRowsBefore).isEqualTo(rows);
            assertThat(router.sum("moe_router_sent_bytes_total", s -> true)).isPositive();
            assertThat(router.sum("moe_router_received_bytes_total", s -> true)).isPositive();
            assertThat(router.sum("moe_router_dispatch_duration_seconds_count", s -> true)).isPositive();
            assertThat(router.sum("moe_router_failovers_total", s -> true)).isZero();
            assertThat(router.sum("moe_router_placement_epoch", s -> true)).isEqualTo(cluster.router().placement().epoch());
            assertThat(router.sum("moe_router_active_sequences", s -> true)).isZero();

            for (ExpertWorker w : cluster.workers()) {
                Exposition worker = scrape(w.metricsPort());
                assertThat(worker.sum("moe_worker_backend_info", s -> s.is("backend", "cpu"))).isEqualTo(1);
                assertThat(worker.sum("moe_worker_expert_memory_bytes", s -> true)).isPositive();
                assertThat(worker.sum("moe_worker_experts", s -> true)).isEqualTo(w.expertCount());
                assertThat(worker.sum("moe_worker_backend_call_rows_sum", s -> true)).isEqualTo(w.rowsComputed());
                assertThat(worker.sum("moe_worker_compute_seconds_count", s -> true)).isEqualTo(w.backendCalls());
                assertThat(worker.names()).contains("jvm_memory_used_bytes", "moe_worker_queue_depth");
            }

            Exposition coordinator = scrape(cluster.coordinator().metricsPort());
            assertThat(coordinator.sum("moe_coordinator_leader", s -> true)).isEqualTo(1);
            assertThat(coordinator.sum("moe_coordinator_workers", s -> s.is("state", "active"))).isEqualTo(3);
            assertThat(coordinator.sum("moe_coordinator_min_replicas", s -> true)).isEqualTo(1);
            assertThat(coordinator.sum("moe_coordinator_rollouts_total", s -> s.is("kind", "initial"))).isEqualTo(1);
            assertThat(coordinator.sum("moe_coordinator_placement_epoch", s -> true)).isPositive();
            assertThat(coordinator.names()).contains("jvm_memory_used_bytes", "moe_coordinator_balancedness");
            assertThat(router.names()).contains("jvm_memory_used_bytes");

            // one Generate stream of 4 tokens: prompt and completion tokens, one first token, three gaps
            channel = Clusters.channel(cluster.router().address());
            try {
                GenerateRequest req = GenerateRequest.newBuilder()
                        .setTokenIds(TokenIds.newBuilder().addAllIds(List.of(1, 2, 3)))
                        .setSampling(SamplingParams.newBuilder().setMaxTokens(4).setTemperature(0f).setIgnoreEos(true))
                        .build();
                Clusters.stub(channel).generate(req).forEachRemaining(r -> { });
            } finally {
                channel.shutdownNow();
            }
            Exposition afterGenerate = scrape(cluster.router().metricsPort());
            assertThat(afterGenerate.sum("moe_router_requests_total", s -> s.is("method", "Generate") && s.is("code", "OK")))
                    .isEqualTo(1);
            assertThat(afterGenerate.sum("moe_router_prompt_tokens_total", s -> true)).isEqualTo(3);
            assertThat(afterGenerate.sum("moe_router_completion_tokens_total", s -> true)).isEqualTo(4);
            assertThat(afterGenerate.sum("moe_router_time_to_first_token_seconds_count", s -> true)).isEqualTo(1);
            assertThat(afterGenerate.sum("moe_router_inter_token_latency_seconds_count", s -> true)).isEqualTo(3);
        }
    }

    /** Rows the workers computed for {@code layer}, summed over the experts each holds. */
    private static double workerRows(LocalCluster cluster, int layer) throws Exception {
        double sum = 0;
        for (ExpertWorker w : cluster.workers()) {
            sum += scrape(w.metricsPort()).sum("moe_worker_rows_total", s -> s.is("layer", String.valueOf(layer)));
        }
        return sum;
    }

    private static Exposition scrape(int port) throws IOException, InterruptedException {
        assertThat(port).isPositive();
        HttpResponse<String> r = HTTP.send(HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + port + "/metrics")).build(),
                HttpResponse.BodyHandlers.ofString());
        assertThat(r.statusCode()).isEqualTo(200);
        return Exposition.parse(r.body());
    }

    /** One sample of the text exposition format. */
    private record Sample(String name, Map<String, String> labels, double value) {
        boolean is(String label, String v) {
            return v.equals(labels.get(label));
        }
    }

    /** The samples of a Prometheus text exposition (comments skipped, no timestamps expected). */
    private record Exposition(List<Sample> samples) {
        private static final Pattern LINE = Pattern.compile("([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\\{(.*)\\})?\\s+(\\S+)");
        private static final Pattern LABEL = Pattern.compile("([a-zA-Z_][a-zA-Z0-9_]*)=\"((?:[^\"\\\\]|\\\\.)*)\"");

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

        double sum(String name, Predicate<Sample> filter) {
            assertThat(names()).as("series %s", name).contains(name);
            return samples.stream().filter(s -> s.name().equals(name) && filter.test(s)).mapToDouble(Sample::value).sum();
        }

        List<String> names() {
            return samples.stream().map(Sample::name).distinct().toList();
        }
    }
}
