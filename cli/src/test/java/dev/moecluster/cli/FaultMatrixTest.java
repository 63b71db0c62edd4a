package dev.moecluster.cli;

import static org.assertj.core.api.Assertions.assertThat;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.moecluster.bench.fault.Fault;
import dev.moecluster.bench.fault.FaultCluster;
import dev.moecluster.bench.fault.FaultMatrix;
import dev.moecluster.bench.fault.Netns;
import dev.moecluster.bench.fault.SteadyTraffic;
import dev.moecluster.core.model.Architecture;
import java.nio.file.Path;
import java.util.List;
import java.util.Optional;
import java.util.Set;
import org.junit.jupiter.api.Test;

/**
 * The fault matrix on real processes, one network namespace per host (3 coordinators, 3 workers, a
 * router; 2 replicas), under steady traffic checked against the reference: no fault loses a call or
 * returns a wrong answer, never do two coordinators lead at once, no healthy worker is declared dead
 * or suspect, and a worker whose process or data plane stops answering loses its experts while the
 * fault lasts. Latency figures are printed, not asserted (they are the benchmark's,
 * {@code moe bench faults}). Skipped where the machine has no network namespaces or nftables.
 */
class FaultMatrixTest {
    private final Path dir = Clusters.tinyModel(Architecture.MIXTRAL);

    @Test
    void noFaultOfTheMatrixLosesACallOrDeclaresAHealthyWorkerDead() throws Exception {
        Optional<String> unavailable = Netns.unavailable();
        assumeTrue(unavailable.isEmpty(), () -> "fault matrix skipped: " + unavailable.orElse(""));
        Path logs = Path.of("target", "fault-matrix-logs");
        var options = new FaultCluster.Options(dir, 3, 3, 2, logs, FaultCluster.javaCommand("384m"));
        try (FaultCluster cluster = FaultCluster.start(options)) {
            cluster.awaitSteady(240);
            try (SteadyTraffic traffic = new SteadyTraffic(cluster.routerAddress(), dir, cluster.model(), 8, 2)) {
                List<FaultMatrix.Result> results = new FaultMatrix(cluster, traffic, new FaultMatrix.Timing(4, 10, 6), System.out)
                        .runAll(List.of(Fault.values()));
                FaultMatrix.print(results, System.out);
                for (FaultMatrix.Result r : results) {
                    assertThat(r.failed()).as("%s: failed calls (%s)", r.fault().label(), r.errors()).isZero();
                    assertThat(r.before().calls() + r.during().calls() + r.after().calls()).as("%s: calls", r.fault().label())
                            .isPositive();
                    assertThat(r.mostLeaders()).as("%s: coordinators leading at once", r.fault().label()).isLessThanOrEqualTo(1);
                    assertThat(r.wronglyDeclared()).as("%s: healthy workers declared dead or suspect", r.fault().label()).isEmpty();
                    if (Set.of(Fault.WORKER_SIGKILL, Fault.WORKER_SIGSTOP, Fault.DATA_PLANE_BLACKHOLE).contains(r.fault())) {
                        assertThat(r.replacedSeconds()).as("%s: the victim's experts placed elsewhere", r.fault().label()).isNotNaN();
                    }
                }
                assertThat(results).extracting(FaultMatrix.Result::fault).containsExactly(Fault.values());
            }
        }
    }
}
