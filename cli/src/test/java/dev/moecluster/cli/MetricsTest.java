package dev.moecluster.cli;

import static org.assertj.core.api.Assertions.assertThat;

import dev.moecluster.control.BuildInfo;
import dev.moecluster.core.model.Architecture;
import dev.moecluster.core.model.ModelConfig;
import dev.moecluster.router.generate.GenerationConfig;
import dev.moecluster.worker.ExpertWorker;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;

/** Scrapes every component of a running local cluster over HTTP and checks the series move with traffic. */
class MetricsTest {
    @Test
    void seriesMoveWithMoeForwardAndGenerateTraffic() throws Exception {
        Path dir = Clusters.tinyModel(Architecture.MIXTRAL);
        try (LocalCluster cluster = LocalCluster.start(LocalCluster.Options.of(dir, 3, 1).withCoordinator(true))) {
            ModelConfig cfg = cluster.model();
            int layer = cfg.moeLayerList().getFirst();
            int calls = 5;
            int tokens = 7;
            double workerRowsBefore = workerRows(cluster, layer);
            double routerRowsBefore = Exposition.scrape(cluster.router().metricsPort()).sum("moe_router_routed_rows_total", s -> true);

            Clusters.moeForwardCalls(cluster, layer, calls, tokens);

            long rows = (long) calls * tokens * cfg.expertsPerToken();
            assertThat(workerRows(cluster, layer) - workerRowsBefore).isEqualTo(rows);

            Exposition router = Exposition.scrape(cluster.router().metricsPort());
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
            assertThat(router.sum("moe_router_kv_cache_capacity_bytes", s -> true))
                    .isEqualTo(GenerationConfig.defaults().kvCacheBudgetBytes());

            for (ExpertWorker w : cluster.workers()) {
                Exposition worker = Exposition.scrape(w.metricsPort());
                assertThat(worker.sum("moe_worker_backend_info", s -> s.is("backend", "cpu"))).isEqualTo(1);
                assertThat(worker.sum("moe_worker_expert_memory_bytes", s -> true)).isPositive();
                assertThat(worker.sum("moe_worker_experts", s -> true)).isEqualTo(w.expertCount());
                assertThat(worker.sum("moe_worker_backend_call_rows_sum", s -> true)).isEqualTo(w.rowsComputed());
                assertThat(worker.sum("moe_worker_compute_seconds_count", s -> true)).isEqualTo(w.backendRounds());
                assertThat(worker.sum("moe_worker_backend_call_rows_count", s -> true)).isEqualTo(w.backendCalls());
                assertThat(worker.names()).contains("jvm_memory_used_bytes", "moe_worker_queue_depth");
                // a worker that served batches keeps their buffers for the next ones
                assertThat(worker.sum("moe_worker_data_buffer_bytes", s -> s.is("state", "kept"))).isPositive();
                assertThat(worker.sum("moe_worker_data_buffer_bytes", s -> s.is("state", "in_use"))).isNotNegative();
            }

            Exposition coordinator = Exposition.scrape(cluster.coordinator().metricsPort());
            assertThat(coordinator.sum("moe_coordinator_leader", s -> true)).isEqualTo(1);
            assertThat(coordinator.sum("moe_coordinator_leader_term", s -> true)).as("the first leader's term").isEqualTo(1);
            assertThat(coordinator.sum("moe_coordinator_workers", s -> s.is("state", "active"))).isEqualTo(3);
            assertThat(coordinator.sum("moe_coordinator_min_replicas", s -> true)).isEqualTo(1);
            assertThat(coordinator.sum("moe_coordinator_experts_without_live_replica", s -> true)).isZero();
            assertThat(coordinator.sum("moe_coordinator_rollouts_total", s -> s.is("kind", "initial"))).isEqualTo(1);
            // the initial placement loaded one copy of every expert and unloaded nothing
            assertThat(coordinator.sum("moe_coordinator_expert_loads_total", s -> s.is("kind", "initial")))
                    .isEqualTo((double) cfg.moeLayerList().size() * cfg.numExperts());
            assertThat(coordinator.sum("moe_coordinator_expert_unloads_total", s -> true)).isZero();
            assertThat(coordinator.sum("moe_coordinator_placement_epoch", s -> true)).isPositive();
            assertThat(coordinator.names()).contains("jvm_memory_used_bytes", "moe_coordinator_balancedness");
            assertThat(router.names()).contains("jvm_memory_used_bytes");
            String version = BuildInfo.version();
            assertThat(version).matches("\\d+\\.\\d+\\.\\d+.*");
            assertThat(router.sum("moe_build_info", s -> s.is("component", "router") && s.is("version", version))).isEqualTo(1);
            assertThat(coordinator.sum("moe_build_info", s -> s.is("component", "coordinator") && s.is("version", version)))
                    .isEqualTo(1);
            for (ExpertWorker w : cluster.workers()) {
                assertThat(Exposition.scrape(w.metricsPort()).sum("moe_build_info", s -> s.is("component", "worker")))
                        .isEqualTo(1);
            }

            // one Generate stream of 4 tokens: prompt and completion tokens, one first token, three gaps
            Clusters.generateGreedy(cluster, List.of(1, 2, 3), 4);
            Exposition afterGenerate = Exposition.scrape(cluster.router().metricsPort());
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
            sum += Exposition.scrape(w.metricsPort()).sum("moe_worker_rows_total", s -> s.is("layer", String.valueOf(layer)));
        }
        return sum;
    }
}
