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
    DEAD
}
