package dev.moecluster.coordinator;

import static java.util.Objects.requireNonNull;

/** One copy of one expert on one worker: the unit a rollout loads or unloads. */
public record ExpertCopy(String worker, int layer, int expert) {
    public ExpertCopy {
        requireNonNull(worker, "worker is null");
    }

    @Override
    public String toString() {
        return "L" + layer + "/E" + expert + "@" + worker;
    }
}
