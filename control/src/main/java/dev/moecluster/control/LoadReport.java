package dev.moecluster.control;

import java.util.Map;
import java.util.TreeMap;

/** Tokens a router has routed per expert since it started, by layer; the coordinator takes deltas. */
public record LoadReport(String router, long millis, Map<Integer, long[]> tokensByLayer) {
    public LoadReport {
        tokensByLayer = new TreeMap<>(tokensByLayer);
    }

    public String toJson() {
        return Json.GSON.toJson(this);
    }

    public static LoadReport fromJson(String json) {
        return Json.GSON.fromJson(json, LoadReport.class);
    }
}
