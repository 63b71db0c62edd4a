package dev.moecluster.coordinator;

/**
 * How the placement planner trades balance against memory and migrations.
 *
 * @param minReplicas copies of every expert, each on a distinct worker (default 1)
 * @param migrationThreshold the balancedness gain (mean / max worker load, 0..1) a rebalance must
 *     bring before the planner moves, adds or removes any expert copy; repairs after a worker dies
 *     or drains happen regardless (default 0.05)
 * @param targetBalancedness the planner adds redundant replicas of hot experts only until its
 *     packing reaches this balancedness, or memory runs out; 1 uses all the memory it can
 *     (default 0.95)
 */
public record PlacementPolicy(int minReplicas, double migrationThreshold, double targetBalancedness) {
    public static final int DEFAULT_MIN_REPLICAS = 1;
    public static final double DEFAULT_MIGRATION_THRESHOLD = 0.05;
    public static final double DEFAULT_TARGET_BALANCEDNESS = 0.95;

    public PlacementPolicy {
        if (minReplicas < 1) {
            throw new IllegalArgumentException("min replicas must be at least 1, got " + minReplicas);
        }
        if (!(migrationThreshold >= 0 && migrationThreshold <= 1)) {
            throw new IllegalArgumentException("migration threshold is a balancedness gain in [0, 1], got "
                    + migrationThreshold);
        }
        if (!(targetBalancedness > 0 && targetBalancedness <= 1)) {
            throw new IllegalArgumentException("target balancedness must be in (0, 1], got " + targetBalancedness);
        }
    }

    public static PlacementPolicy defaults() {
        return new PlacementPolicy(DEFAULT_MIN_REPLICAS, DEFAULT_MIGRATION_THRESHOLD, DEFAULT_TARGET_BALANCEDNESS);
    }

    public PlacementPolicy withMinReplicas(int minReplicas) {
        return new PlacementPolicy(minReplicas, migrationThreshold, targetBalancedness);
    }

    public PlacementPolicy withMigrationThreshold(double migrationThreshold) {
        return new PlacementPolicy(minReplicas, migrationThreshold, targetBalancedness);
    }

    public PlacementPolicy withTargetBalancedness(double targetBalancedness) {
        return new PlacementPolicy(minReplicas, migrationThreshold, targetBalancedness);
    }
}
