package dev.moecluster.control;

/** A router's heartbeat and the placement epoch it routes with. */
public record RouterRecord(String id, String address, long epoch, long heartbeatMillis) {
    public String toJson() {
        return Json.GSON.toJson(this);
    }

    public static RouterRecord fromJson(String json) {
        return Json.GSON.fromJson(json, RouterRecord.class);
    }
}
