package dev.moecluster.control;

import java.util.Map;
import java.util.TreeMap;

/**
 * How each worker answered one router's batches over the last 10 s: batches failed (or timed out)
 * and batches answered, and how many failed in a row since its last answer, by worker address. The leader sums the fresh reports
 * of all routers to find workers whose data plane fails while their heartbeats go on.
 */
public record HealthReport(String router, long millis, Map<String, Counts> workers) {
    public HealthReport {
        workers = new TreeMap<>(workers);
    }

    /** Batches failed and answered over the window, and failed since the last answer. */
    public record Counts(long failures, long answers, long failingStreak) {
        public Counts plus(Counts o) {
            return new Counts(failures + o.failures, answers + o.answers, failingStreak + o.failingStreak);
        }
    }

    public String toJson() {
        return Json.GSON.toJson(this);
    }

    public static HealthReport fromJson(String json) {
        return Json.GSON.fromJson(json, HealthReport.class);
    }
}
