/**
 * The coordinator: a Hazelcast member that will own the worker registry, the versioned expert
 * placement and rebalancing. Its placement planner ({@link dev.moecluster.coordinator.PlacementPlanner})
 * is pure computation: from the model's shape, the workers' memory and the experts' load it plans
 * the next placement and the copies a two-phase rollout loads and unloads.
 */
package dev.moecluster.coordinator;
