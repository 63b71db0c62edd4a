package dev.moecluster.coordinator;

import com.google.gson.Gson;

/**
 * A placement change in progress, stored in the placement map so a new leader carries it on.
 * {@code LOADING}: workers load their new experts while keeping the old ones. {@code PUBLISHED}:
 * the new epoch is current; old copies stay until every router has switched and the grace passed.
 */
record Rollout(String placementJson, String phase, long sinceMillis, long routersSwitchedMillis, String reason) {
    static final String LOADING = "loading";
    static final String PUBLISHED = "published";
    private static final Gson GSON = new Gson();

    Rollout withPhase(String p, long since) {
        return new Rollout(placementJson, p, since, 0, reason);
    }

    Rollout withRoutersSwitched(long millis) {
        return new Rollout(placementJson, phase, sinceMillis, millis, reason);
    }

    String toJson() {
        return GSON.toJson(this);
    }

    static Rollout fromJson(String json) {
        return GSON.fromJson(json, Rollout.class);
    }
}
