package dev.moecluster.coordinator;

/**
 * Whether the leader may take a stale heartbeat for a dead worker: only once it has itself watched
 * the worker registry, look after look, without a pause for a whole heartbeat timeout.
 *
 * <p>A heartbeat is stale either because the worker stopped sending or because the coordinators could
 * not record it: a member cut off from the others holds the records its partitions own until it is
 * expelled or the network heals, and a member that joins or leaves moves partitions. Either way the
 * leader's own look at the registry stalls with the writes, so a pause in its looks is the sign to
 * wait a heartbeat timeout again before declaring anyone dead. A new leader starts the same way: it
 * has watched nothing yet, and heartbeats that went to the old leader still have to find their way.
 */
final class RegistryWatch {
    private final long heartbeatTimeoutMillis;
    private final long pauseMillis;
    /** When the current unbroken watch began, or -1 while there is none. */
    private long since = -1;
    private long lastLook = -1;

    /**
     * @param heartbeatTimeoutMillis how old a heartbeat may be before its worker is dead
     * @param pauseMillis the longest gap between two looks that still counts as watching (a gap the
     *     components' heartbeats could fall into)
     */
    RegistryWatch(long heartbeatTimeoutMillis, long pauseMillis) {
        if (heartbeatTimeoutMillis <= 0 || pauseMillis <= 0) {
            throw new IllegalArgumentException("timeouts must be positive, got " + heartbeatTimeoutMillis + " and " + pauseMillis);
        }
        this.heartbeatTimeoutMillis = heartbeatTimeoutMillis;
        this.pauseMillis = pauseMillis;
    }

    /**
     * Records a look at the registry, read at {@code nowMillis}.
     *
     * @return the gap since the previous look when it broke the watch (a pause longer than allowed),
     *     0 when the watch goes on or starts fresh
     */
    long look(long nowMillis) {
        long gap = 0;
        if (lastLook < 0) {
            since = nowMillis;
        } else if (nowMillis - lastLook > pauseMillis) {
            gap = nowMillis - lastLook;
            since = nowMillis;
        }
        lastLook = nowMillis;
        return gap;
    }

    /** Whether the registry has been watched without a pause for longer than a heartbeat timeout. */
    boolean staleMeansDead(long nowMillis) {
        return since >= 0 && nowMillis - since > heartbeatTimeoutMillis;
    }

    /** This member stopped leading: whatever it watched counts for nothing next time. */
    void stop() {
        since = -1;
        lastLook = -1;
    }
}
