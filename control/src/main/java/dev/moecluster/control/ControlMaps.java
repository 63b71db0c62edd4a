package dev.moecluster.control;

/**
 * Names of the Hazelcast maps that hold the cluster's state. Values are JSON text, readable with any
 * Hazelcast client and independent of Java class versions.
 */
public final class ControlMaps {
    /** worker id → {@link WorkerRecord}. */
    public static final String WORKERS = "moe.workers";
    /** worker id → {@link Assignment}: the experts the worker must hold now. */
    public static final String ASSIGNMENTS = "moe.assignments";
    /** {@link #CURRENT} → the published placement; {@link #PENDING} → one being rolled out. */
    public static final String PLACEMENT = "moe.placement";
    /** router id → {@link RouterRecord}. */
    public static final String ROUTERS = "moe.routers";
    /** router id → {@link LoadReport}: tokens routed per expert since the router started. */
    public static final String LOAD = "moe.load";
    /** router id → {@link HealthReport}: how each worker answered that router's batches lately. */
    public static final String HEALTH = "moe.health";
    /** Operator requests for the leader, e.g. {@link #REBALANCE}. */
    public static final String REQUESTS = "moe.requests";

    public static final String CURRENT = "current";
    public static final String PENDING = "pending";
    public static final String REBALANCE = "rebalance";

    private ControlMaps() {}
}
