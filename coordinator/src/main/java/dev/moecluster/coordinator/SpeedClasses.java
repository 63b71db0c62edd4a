package dev.moecluster.coordinator;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * Worker speeds as the coordinator hands them to the planner: grouped into classes, each speed
 * within {@link #FACTOR}× of its class's slowest member taking that member's figure. Measured
 * speeds of like machines differ by noise; grouping keeps a cluster of like workers planned exactly
 * as a rows-balancing planner would (and its plan stable across heartbeats), while GPU and CPU
 * workers, tens of times apart, still differ.
 */
final class SpeedClasses {
    /**
     * Speeds closer than this ratio to their class's slowest count as equal. Like workers'
     * calibrations differed by up to 2.1× on a busy 2-vCPU VM (40–82 k rows/s at 256 rows on three
     * workers started together); GPU and CPU workers differ by far more than 4×.
     */
    static final double FACTOR = 4.0;

    private SpeedClasses() {}

    /** Each speed replaced by its class's slowest; 0 (unknown) stays 0. */
    static double[] of(double[] rowsPerSecond) {
        double[] known = Arrays.stream(rowsPerSecond).filter(s -> s > 0).sorted().toArray();
        List<Double> floors = new ArrayList<>();
        for (double s : known) {
            if (floors.isEmpty() || s >= floors.getLast() * FACTOR) {
                floors.add(s);
            }
        }
        double[] out = new double[rowsPerSecond.length];
        for (int w = 0; w < out.length; w++) {
            double s = rowsPerSecond[w];
            for (double floor : floors) {
                if (s >= floor) {
                    out[w] = floor;
                }
            }
        }
        return out;
    }

    /** The workers with their speeds grouped. */
    static List<WorkerCapacity> apply(List<WorkerCapacity> workers) {
        double[] grouped = of(workers.stream().mapToDouble(WorkerCapacity::rowsPerSecond).toArray());
        List<WorkerCapacity> out = new ArrayList<>(workers.size());
        for (int w = 0; w < grouped.length; w++) {
            out.add(workers.get(w).withRowsPerSecond(grouped[w]));
        }
        return out;
    }
}
