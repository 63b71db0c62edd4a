/**
 * The coordinator: a Hazelcast member that will own the worker registry, the versioned expert
 * placement and rebalancing. Until it lands, placement is static (see
 * {@code dev.moecluster.core.ExpertPlacement#roundRobin}).
 */
package dev.moecluster.coordinator;
