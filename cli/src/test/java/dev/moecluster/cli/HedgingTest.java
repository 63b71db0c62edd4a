package dev.moecluster.cli;

import static org.assertj.core.api.Assertions.assertThat;

import dev.moecluster.core.model.Architecture;
import dev.moecluster.core.model.ModelConfig;
import dev.moecluster.core.moe.ReferenceMoeBlock;
import dev.moecluster.core.tensor.DType;
import dev.moecluster.core.tensor.FloatMatrix;
import dev.moecluster.worker.Round;
import io.grpc.ManagedChannel;
import java.nio.file.Path;
import java.util.Map;
import org.junit.jupiter.api.Test;

/**
 * Slow batches (a gray failure short of failing): a batch slower than 95 % of recent ones is hedged to
 * the other replica, whose answer is used; a replica that stays slow is expected to answer late and its
 * rows go to the fast one. No call fails or returns a wrong result.
 */
class HedgingTest {
    private static final long SLOW_MILLIS = 400;
    private final Path dir = Clusters.tinyModel(Architecture.MIXTRAL);

    /** A cpu backend that takes {@value #SLOW_MILLIS} ms longer for every {@code slowEvery}-th round (0: never). */
    static final class SlowBackend extends ForwardingBackend {
        volatile int slowEvery;
        private final java.util.concurrent.atomic.AtomicLong rounds = new java.util.concurrent.atomic.AtomicLong();

        @Override
        public PendingRound submit(Round round) {
            int every = slowEvery;
            if (every > 0 && rounds.incrementAndGet() % every == 0) {
                try {
                    Thread.sleep(SLOW_MILLIS);
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                }
            }
            return cpu.submit(round);
        }
    }

    @Test
    void slowBatchesAreHedgedAndASlowReplicasRowsGoToTheFastOne() throws Exception {
        SlowBackend first = new SlowBackend();
        SlowBackend second = new SlowBackend();
        var options = LocalCluster.Options.of(dir, 2, 2).withBackends(i -> i == 0 ? first : second);
        try (LocalCluster cluster = LocalCluster.start(options);
                ReferenceMoeBlock reference = ReferenceMoeBlock.open(dir)) {
            ModelConfig cfg = cluster.model();
            String slow = cluster.workers().get(0).address();
            String fast = cluster.workers().get(1).address();
            ManagedChannel channel = Clusters.channel(cluster.router().address());
            try {
                // latencies for the percentile, both replicas fast: enough that the cold first calls are
                // under 5 % of them (the recent window is 30 s, a test is shorter)
                call(channel, cfg, reference, 0, 200);
                // every third round on either replica is slow: whichever the router picks, some batches
                // outlast 95 % of the others and are hedged to the other replica, which is usually fast
                first.slowEvery = 3;
                second.slowEvery = 3;
                call(channel, cfg, reference, 200, 30);
                assertThat(cluster.router().stats().hedgesWon()).as("hedges answered before the slow copy").isPositive();

                // one replica slow for good: the router expects it to answer late and routes to the other
                second.slowEvery = 0;
                first.slowEvery = 1;
                call(channel, cfg, reference, 230, 10);
                cluster.router().stats().takeWorkerHealth();
                call(channel, cfg, reference, 240, 30);
                Map<String, long[]> after = cluster.router().stats().takeWorkerHealth();
                long slowAnswers = after.getOrDefault(slow, new long[2])[1];
                long fastAnswers = after.getOrDefault(fast, new long[2])[1];
                assertThat(fastAnswers).as("batches answered by the fast replica (slow one: %d)", slowAnswers)
                        .isGreaterThan(4 * slowAnswers);
            } finally {
                channel.shutdownNow();
                first.slowEvery = 0;
                second.slowEvery = 0;
            }
        }
    }

    /** {@code n} MoeForward calls, each checked against the reference. */
    private static void call(ManagedChannel channel, ModelConfig cfg, ReferenceMoeBlock reference, int from, int n) {
        for (int i = from; i < from + n; i++) {
            int layer = i % 2;
            FloatMatrix x = Clusters.hidden(cfg, 8, 500 + i, DType.F32);
            FloatMatrix y = Clusters.output(Clusters.stub(channel).moeForward(Clusters.request(layer, x, DType.F32)));
            assertThat(Clusters.relativeError(y, reference.forward(layer, x).output())).as("call %d", i).isLessThan(1e-5);
        }
    }
}
