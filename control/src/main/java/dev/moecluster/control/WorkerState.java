package dev.moecluster.control;

/** A worker's life cycle as the coordinator sees it. */
public enum WorkerState {
    /** Registered, serving, may receive experts. */
    ACTIVE,
    /** An operator asked to move everything off it. */
    DRAINING,
    /** Holds nothing any more and may be stopped. */
    DRAINED,
    /** Missed its heartbeats; its experts are re-replicated on the survivors. */
    DEAD,
    /**
     * Heartbeats arrive, but routers report its data plane failing (batches time out or fail, none
     * answered): its experts move to other workers as for a dead one. Back to ACTIVE after a probation
     * without failure reports, when a rebalance may give it experts again.
     */
    SUSPECT
}
