package dev.moecluster.control;

import static java.util.Objects.requireNonNull;

import dev.moecluster.core.placement.ExpertPlacement;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.function.Function;

/**
 * Decides whether a placement read from the control plane may be acted on, since anyone who reaches
 * Hazelcast's port can write it. A placement is accepted when it parses, its epoch is newer than the one
 * in use and at most {@link #MAX_EPOCH} (so no forged epoch can make the leader's next one overflow),
 * it covers exactly the model's MoE layers and experts, every worker holding an expert is registered and
 * ACTIVE (or DRAINING: it serves until the placement that moves its experts is out), and, when a public
 * key is configured, it carries the leader's valid signature. Without a key a newer epoch may be at most
 * {@link #MAX_UNSIGNED_STEP} ahead of the one in use, which bounds a forged jump but cannot stop a forged
 * next epoch: only signatures do.
 */
public final class PlacementGate {
    /** No real cluster gets near 2^40 rollouts (one a second for 34,000 years); larger epochs are forged. */
    public static final long MAX_EPOCH = 1L << 40;
    /** Without signatures, how far a newer epoch may jump ahead of the one in use (a router missing a few rollouts). */
    public static final long MAX_UNSIGNED_STEP = 1024;

    /** Why a placement was not used; {@code label} is the metric label. */
    public enum Rejection {
        MALFORMED("malformed"), UNSIGNED("unsigned"), BAD_SIGNATURE("bad_signature"), ABSURD_EPOCH("absurd_epoch"),
        EPOCH_JUMP("epoch_jump"), STALE("stale"), SHAPE("shape"), WORKER_NOT_ACTIVE("worker_not_active");

        public final String label;

        Rejection(String label) {
            this.label = label;
        }
    }

    /**
     * The outcome for one record: {@code placement} to use, or null with {@code rejection} and a message
     * (both null too when the record is simply the placement already in use).
     */
    public record Verdict(ExpertPlacement placement, Rejection rejection, String message) {
        static Verdict accept(ExpertPlacement p) {
            return new Verdict(p, null, null);
        }

        static Verdict reject(Rejection r, String message) {
            return new Verdict(null, r, message);
        }

        public boolean accepted() {
            return placement != null;
        }
    }

    private final RecordSigning keys;
    private final List<Integer> moeLayers;
    private final int numExperts;

    /**
     * @param keys the key signatures are checked with; null accepts unsigned placements
     * @param moeLayers the model's MoE layers
     * @param numExperts routed experts per MoE layer
     */
    public PlacementGate(RecordSigning keys, List<Integer> moeLayers, int numExperts) {
        this.keys = keys;
        this.moeLayers = List.copyOf(requireNonNull(moeLayers, "moeLayers is null"));
        this.numExperts = numExperts;
    }

    public boolean requiresSignature() {
        return keys != null;
    }

    /**
     * Checks {@code json} (as read under {@link ControlMaps#CURRENT}) against the epoch in use and the
     * registry ({@code workers}: address → record, null when not registered; asked only for a newer epoch).
     */
    public Verdict check(String json, long currentEpoch, Function<String, WorkerRecord> workers) {
        ExpertPlacement p;
        try {
            p = ExpertPlacement.fromJson(json);
        } catch (RuntimeException e) {
            return Verdict.reject(Rejection.MALFORMED, "placement record does not parse: " + bounded(e.getMessage()));
        }
        if (p.epoch() < 1 || p.epoch() > MAX_EPOCH) {
            return Verdict.reject(Rejection.ABSURD_EPOCH, "placement epoch " + p.epoch() + " is outside 1.." + MAX_EPOCH);
        }
        if (p.epoch() <= currentEpoch) {
            return p.epoch() == currentEpoch ? new Verdict(null, null, null) : Verdict.reject(Rejection.STALE,
                    "placement epoch " + p.epoch() + " is older than the one in use (" + currentEpoch + "): replayed or late");
        }
        if (keys != null) {
            String signature = RecordSigning.signatureIn(json);
            if (signature == null) {
                return Verdict.reject(Rejection.UNSIGNED, "placement epoch " + p.epoch() + " is not signed");
            }
            if (!keys.verifies(RecordSigning.PLACEMENT, ControlMaps.CURRENT, p.toJson(), signature)) {
                return Verdict.reject(Rejection.BAD_SIGNATURE, "placement epoch " + p.epoch()
                        + " does not carry the leader's signature");
            }
        } else if (currentEpoch > 0 && p.epoch() - currentEpoch > MAX_UNSIGNED_STEP) {
            return Verdict.reject(Rejection.EPOCH_JUMP, "placement epoch " + p.epoch() + " jumps more than "
                    + MAX_UNSIGNED_STEP + " past the one in use (" + currentEpoch + ")");
        }
        String shape = shapeProblem(p);
        if (shape != null) {
            return Verdict.reject(Rejection.SHAPE, "placement epoch " + p.epoch() + ": " + shape);
        }
        for (int i = 0; i < p.workers().size(); i++) {
            if (p.heldBy(i).isEmpty()) {
                continue;
            }
            String address = p.workers().get(i);
            WorkerRecord w = workers.apply(address);
            if (w == null || (w.state() != WorkerState.ACTIVE && w.state() != WorkerState.DRAINING)) {
                return Verdict.reject(Rejection.WORKER_NOT_ACTIVE, "placement epoch " + p.epoch() + " places experts on "
                        + bounded(address) + ", which is " + (w == null ? "not registered" : w.state()));
            }
        }
        return Verdict.accept(p);
    }

    /** What does not match the model, or null. */
    public String shapeProblem(ExpertPlacement p) {
        if (!p.layers().keySet().equals(Set.copyOf(moeLayers))) {
            return "layers " + bounded(p.layers().keySet().toString()) + " are not the model's MoE layers " + moeLayers;
        }
        for (Map.Entry<Integer, int[][]> e : p.layers().entrySet()) {
            if (e.getValue().length != numExperts) {
                return "layer " + e.getKey() + " places " + e.getValue().length + " experts, the model has " + numExperts;
            }
            for (int expert = 0; expert < e.getValue().length; expert++) {
                if (e.getValue()[expert].length == 0) {
                    return "expert " + expert + " of layer " + e.getKey() + " has no worker";
                }
            }
        }
        if (new HashSet<>(p.workers()).size() != p.workers().size()) {
            return "a worker is listed twice";
        }
        return null;
    }

    /** Messages quote record content: keep a forged record from flooding the log. */
    private static String bounded(String s) {
        return s == null ? "" : s.length() <= 200 ? s : s.substring(0, 200) + "…";
    }
}
