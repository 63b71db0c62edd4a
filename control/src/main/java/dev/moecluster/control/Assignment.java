package dev.moecluster.control;

import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.TreeSet;

/** The experts a worker must hold, as of a rollout step ({@code epoch} increases with every change). */
public record Assignment(long epoch, Map<Integer, Set<Integer>> experts) {
    public Assignment {
        Map<Integer, Set<Integer>> copy = new TreeMap<>();
        experts.forEach((l, es) -> copy.put(l, new TreeSet<>(es)));
        experts = copy;
    }

    public String toJson() {
        return Json.GSON.toJson(this);
    }

    public static Assignment fromJson(String json) {
        return Json.GSON.fromJson(json, Assignment.class);
    }
}
