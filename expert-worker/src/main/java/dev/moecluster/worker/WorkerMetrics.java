package dev.moecluster.worker;

import dev.moecluster.control.GrpcEndpoint;
import dev.moecluster.control.wire.BufferPool;
import io.prometheus.metrics.core.metrics.Counter;
import io.prometheus.metrics.core.metrics.CounterWithCallback;
import io.prometheus.metrics.core.metrics.GaugeWithCallback;
import io.prometheus.metrics.core.metrics.Info;
import io.prometheus.metrics.model.registry.PrometheusRegistry;
import java.util.Map;
import java.util.Set;

/**
 * The worker's Prometheus series, read from the coalescer, the expert store and the data plane's
 * buffer pool when scraped. Rows per
 * (layer, expert) cover only the experts held at scrape time, so the series stay bounded by the
 * assignment; {@code perExpert = false} sums them into one series for large models.
 */
final class WorkerMetrics {
    private WorkerMetrics() {}

    /** Registers the worker's series; returns the counter of {@code ExpertService} calls for its gRPC endpoint. */
    static GrpcEndpoint.CallCounter register(PrometheusRegistry registry, BatchCoalescer coalescer, ExpertStore store,
            BufferPool buffers, String backend, boolean perExpert) {
        CounterWithCallback.Builder rows = CounterWithCallback.builder()
                .name("moe_worker_rows_total")
                .help("Rows (token-expert pairs) computed" + (perExpert ? ", per held expert" : ""));
        if (perExpert) {
            rows.labelNames("layer", "expert").callback(cb -> {
                for (Map.Entry<Integer, Set<Integer>> layer : store.assignment().byLayer().entrySet()) {
                    for (int expert : layer.getValue()) {
                        cb.call(coalescer.rowsComputed(layer.getKey(), expert), String.valueOf(layer.getKey()),
                                String.valueOf(expert));
                    }
                }
            });
        } else {
            rows.callback(cb -> cb.call(coalescer.rowsComputed()));
        }
        rows.register(registry);
        CounterWithCallback.builder().name("moe_worker_backend_calls_total").help("Expert computations: one per expert per backend round")
                .callback(cb -> cb.call(coalescer.backendCalls())).register(registry);
        registry.register(coalescer.rowsPerCall());
        registry.register(coalescer.computeSeconds());
        GaugeWithCallback.builder().name("moe_worker_queue_depth").help("Expert slices waiting for the compute thread")
                .callback(cb -> cb.call(coalescer.queued())).register(registry);
        GaugeWithCallback.builder().name("moe_worker_experts").help("Experts held")
                .callback(cb -> cb.call(store.assignment().expertCount())).register(registry);
        GaugeWithCallback.builder().name("moe_worker_expert_memory_bytes").help("Bytes of expert weights held")
                .callback(cb -> cb.call(store.byteSize())).register(registry);
        GaugeWithCallback.builder().name("moe_worker_data_buffer_bytes")
                .help("Bytes of the data plane's buffers batches are received into and results built in (pinned host memory"
                        + " with cuda): in use, or kept for reuse")
                .labelNames("state").callback(cb -> {
                    cb.call(buffers.outstandingBytes(), "in_use");
                    cb.call(buffers.retainedBytes(), "kept");
                }).register(registry);
        Info info = Info.builder().name("moe_worker_backend_info").help("The expert backend this worker computes with")
                .labelNames("backend").register(registry);
        info.setLabelValues(backend);
        Counter requests = Counter.builder().name("moe_worker_requests_total")
                .help("ExpertService calls finished, by method and gRPC status code")
                .labelNames("method", "code").register(registry);
        return (method, code) -> requests.labelValues(method, code.name()).inc();
    }
}
