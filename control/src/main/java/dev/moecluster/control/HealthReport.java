package dev.moecluster.control;

import java.util.Map;
import java.util.TreeMap;

/**
 * How each worker answered one router's batches over the last 10 s: batches failed (or timed out)
 * and batches answered, by worker address. The leader sums the fresh reports
 * of all routers to find workers whose data plane fails while their heartbeats go on.
 */
public record HealthReport(String router, long millis, Map<String, Counts> workers) {
    public HealthReport {
        workers = new TreeMap<>(workers);
    }

    /** Batches failed and answered. */
    public record Counts(long failures, long answers) {}

    public String toJson() {
        return Json.GSON.toJson(this);
    }

    public static HealthReport fromJson(String json) {
        return Json.GSON.fromJson(json, HealthReport.class);
    }
}
