package dev.moecluster.control;

import static java.util.Objects.requireNonNull;

import java.time.Duration;
import java.util.List;

/**
 * How components find the coordinators and how fast the control plane reacts.
 *
 * @param clusterName Hazelcast cluster name; components with different names never see each other
 * @param coordinators coordinator member addresses ({@code host:port}) clients connect to
 * @param heartbeatInterval how often workers and routers refresh their records
 * @param deadAfter a worker whose record is older than this is declared dead
 * @param placementKey the leader's public key: placements (routers) and assignments (workers) without its
 *     valid signature are ignored; null accepts unsigned records
 */
public record ControlPlaneConfig(String clusterName, List<String> coordinators, Duration heartbeatInterval, Duration deadAfter,
        RecordSigning placementKey) {
    public static final String DEFAULT_CLUSTER_NAME = "moe-cluster";

    public ControlPlaneConfig {
        requireNonNull(clusterName, "clusterName is null");
        coordinators = List.copyOf(coordinators);
        if (coordinators.isEmpty()) {
            throw new IllegalArgumentException("at least one coordinator address is needed");
        }
        if (heartbeatInterval.isNegative() || heartbeatInterval.isZero() || deadAfter.compareTo(heartbeatInterval) <= 0) {
            throw new IllegalArgumentException("need 0 < heartbeat interval < dead-after, got " + heartbeatInterval + " and " + deadAfter);
        }
    }

    /** Unsigned records accepted. */
    public ControlPlaneConfig(String clusterName, List<String> coordinators, Duration heartbeatInterval, Duration deadAfter) {
        this(clusterName, coordinators, heartbeatInterval, deadAfter, null);
    }

    /** Acts only on records signed by the leader's key matching {@code key}; null accepts unsigned ones. */
    public ControlPlaneConfig withPlacementKey(RecordSigning key) {
        return new ControlPlaneConfig(clusterName, coordinators, heartbeatInterval, deadAfter, key);
    }

    /** Heartbeat every second, dead after 5 s without one. */
    public static ControlPlaneConfig of(String clusterName, List<String> coordinators) {
        return new ControlPlaneConfig(clusterName, coordinators, Duration.ofSeconds(1), Duration.ofSeconds(5));
    }
}
