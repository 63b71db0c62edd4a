package dev.moecluster.coordinator;

import static java.util.Objects.requireNonNull;

import dev.moecluster.core.placement.ExpertPlacement;
import java.util.List;

/**
 * The planner's answer: the placement to publish and the copies a two-phase rollout must load
 * (before publishing) and unload (after routers have switched). Unloads name only live workers;
 * copies on workers that are gone need no action.
 *
 * @param placement the placement to publish; the input placement itself when {@link #decision()}
 *     is {@link Decision#UNCHANGED}, otherwise one with the next epoch that lists every input
 *     worker in input order (draining ones holding nothing) and keeps each expert's surviving
 *     copies first, in their old order
 * @param loads copies to load before the new epoch is published, by worker (input order), layer, expert
 * @param unloads copies to unload once routers have switched, in the same order
 * @param balancednessBefore mean / max worker load of the input placement over the workers that
 *     hold or may hold experts (0 when there was none)
 * @param balancednessAfter the same for {@link #placement()}
 */
public record PlacementPlan(
        ExpertPlacement placement,
        Decision decision,
        List<ExpertCopy> loads,
        List<ExpertCopy> unloads,
        double balancednessBefore,
        double balancednessAfter) {

    /** Why the placement is what it is. */
    public enum Decision {
        /** There was no placement: a fresh one. */
        INITIAL,
        /** The input placement stands: nothing to repair and rebalancing would gain too little. */
        UNCHANGED,
        /**
         * Workers are gone, draining or short of memory, or experts lack replicas: the least change
         * that restores replica counts and memory budgets, rebalanced too when that gains more than
         * the migration threshold.
         */
        REPAIR,
        /** Nothing needed repair, but rebalancing gains more than the migration threshold. */
        REBALANCE
    }

    public PlacementPlan {
        requireNonNull(placement, "placement is null");
        requireNonNull(decision, "decision is null");
        loads = List.copyOf(loads);
        unloads = List.copyOf(unloads);
    }

    /** Whether a new epoch must be rolled out. */
    public boolean changed() {
        return decision != Decision.UNCHANGED;
    }
}
