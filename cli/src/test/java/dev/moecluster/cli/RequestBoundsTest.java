package dev.moecluster.cli;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.moecluster.core.model.Architecture;
import dev.moecluster.proto.FinishReason;
import dev.moecluster.proto.GenerateRequest;
import dev.moecluster.proto.GenerateResponse;
import dev.moecluster.proto.RouterGrpc;
import dev.moecluster.router.RouterConfig;
import dev.moecluster.router.RouterServer;
import dev.moecluster.router.generate.GenerationConfig;
import dev.moecluster.router.generate.GenerationScheduler;
import dev.moecluster.router.generate.TextTokenizer;
import dev.moecluster.proto.SamplingParams;
import io.grpc.Context;
import io.grpc.ManagedChannel;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import java.nio.file.Path;
import java.util.Iterator;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * One request cannot take others down: requests at the edges of every size limit get a clear status
 * or are clamped, while a victim request running beside them finishes with the tokens it gets alone.
 * The model is a tiny Mixtral (context 4096 tokens).
 */
class RequestBoundsTest {
    private static Path dir;
    private static LocalCluster cluster;
    private static ManagedChannel channel;

    @BeforeAll
    static void start() throws Exception {
        dir = Clusters.tinyModel(Architecture.MIXTRAL);
        cluster = LocalCluster.start(LocalCluster.Options.of(dir, 2, 1));
        channel = Clusters.channel(cluster.router().address());
    }

    @AfterAll
    static void stop() {
        channel.shutdownNow();
        cluster.close();
    }

    private static GenerateRequest greedy(int[] prompt, int maxTokens) {
        GenerateRequest r = GenerateClusterTest.greedy(prompt, maxTokens);
        return r.toBuilder().setSampling(r.getSampling().toBuilder().setIgnoreEos(true)).build();
    }

    /** Waits until the scheduler has no sequence and no KV reservation left. */
    private static void awaitIdle(GenerationScheduler scheduler) throws InterruptedException {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
        while ((scheduler.requestsInFlight() > 0 || scheduler.kvCacheReservedBytes() != 0) && System.nanoTime() < deadline) {
            Thread.sleep(20);
        }
        assertThat(scheduler.requestsInFlight()).isZero();
        assertThat(scheduler.kvCacheReservedBytes()).isZero();
    }

    @Test
    void maxTokensOfIntMaxIsClampedToTheContextWhileAVictimStreamFinishes() throws Exception {
        GenerationScheduler scheduler = cluster.router().scheduler();
        int[] victimPrompt = {5, 6, 7};
        List<Integer> alone = GenerateClusterTest.collect(Clusters.stub(channel).generate(greedy(victimPrompt, 40))).ids();
        awaitIdle(scheduler);

        Iterator<GenerateResponse> victim = Clusters.stub(channel).generate(greedy(victimPrompt, 40));
        List<Integer> victimIds = new java.util.ArrayList<>(victim.next().getTokenIdsList());
        Context.CancellableContext ctx = Context.current().withCancellation();
        Iterator<GenerateResponse> huge = ctx.call(() -> Clusters.stub(channel).generate(greedy(new int[] {1, 2, 3}, Integer.MAX_VALUE)));
        for (int i = 0; i < 3; i++) {
            assertThat(huge.next().getTokenIdsCount()).isEqualTo(1);
        }
        // reserved for prompt + max_tokens clamped to the context, never a wrapped (negative) size; the
        // victim (3 + 40 tokens) may have finished already
        long perBlock = scheduler.kvBlockPool().bytesPerBlock();
        assertThat(scheduler.kvCacheReservedBytes()).isIn((4096 / 16 + 3) * perBlock, 4096 / 16 * perBlock);
        GenerateClusterTest.Generated rest = GenerateClusterTest.collect(victim);
        victimIds.addAll(rest.ids());
        assertThat(victimIds).isEqualTo(alone);
        assertThat(rest.last().getFinishReason()).isEqualTo(FinishReason.FINISH_REASON_LENGTH);
        ctx.cancel(null);
        awaitIdle(scheduler);
    }

    @Test
    void maxTokensOfIntMaxBeyondTheKvBudgetIsRefusedAndTheBudgetStaysBalanced() throws Exception {
        long perToken = cluster.router().decoder().kvBytesPerToken(dev.moecluster.core.tensor.DType.BF16);
        var config = RouterConfig.defaults(dir, cluster.placement())
                .withGeneration(GenerationConfig.defaults().withKvCacheBudgetBytes(1000 * perToken));
        try (RouterServer router = RouterServer.start(config)) {
            ManagedChannel ch = Clusters.channel(router.address());
            try {
                Iterator<GenerateResponse> victim = Clusters.stub(ch).generate(greedy(new int[] {5, 6, 7}, 30));
                victim.next();
                assertThatThrownBy(() -> GenerateClusterTest.collect(Clusters.stub(ch).generate(greedy(new int[] {1, 2}, Integer.MAX_VALUE))))
                        .isInstanceOfSatisfying(StatusRuntimeException.class, e -> {
                            assertThat(e.getStatus().getCode()).isEqualTo(Status.Code.RESOURCE_EXHAUSTED);
                            assertThat(e.getStatus().getDescription()).contains("prompt + max_tokens need 4096 tokens of KV cache");
                        });
                GenerateClusterTest.Generated rest = GenerateClusterTest.collect(victim);
                assertThat(rest.last().getUsage().getCompletionTokens()).isEqualTo(30);
                awaitIdle(router.scheduler());
            } finally {
                ch.shutdownNow();
            }
        }
    }

    @Test
    void aTextPromptOf1200TokensKeepsAllItsTokens() throws Exception {
        String text = "The router gathers every token's hidden state and sends it to the workers; ".repeat(60);
        int expected;
        try (TextTokenizer tokenizer = TextTokenizer.load(dir)) {
            expected = tokenizer.encode(text).length;
        }
        assertThat(expected).isGreaterThan(1200);
        GenerateRequest req = GenerateRequest.newBuilder().setText(text)
                .setSampling(SamplingParams.newBuilder().setMaxTokens(2).setTemperature(0f).setIgnoreEos(true)).build();
        GenerateClusterTest.Generated g = GenerateClusterTest.collect(Clusters.stub(channel).generate(req));
        assertThat(g.last().getUsage().getPromptTokens()).isEqualTo(expected);
        assertThat(g.ids()).hasSize(2);
    }

    @Test
    void aFortyMegabyteTextPromptIsRefusedBeforeTokenizing() {
        long limit = cluster.router().scheduler().maxPromptTextBytes();
        assertThat(limit).isEqualTo(16L * 4096);
        GenerateRequest req = GenerateRequest.newBuilder().setText("a".repeat(40 << 20))
                .setSampling(SamplingParams.newBuilder().setMaxTokens(2)).build();
        assertThatThrownBy(() -> GenerateClusterTest.collect(Clusters.stub(channel).generate(req)))
                .isInstanceOfSatisfying(StatusRuntimeException.class, e -> {
                    assertThat(e.getStatus().getCode()).isEqualTo(Status.Code.INVALID_ARGUMENT);
                    assertThat(e.getStatus().getDescription()).isEqualTo("prompt text is " + (40 << 20)
                            + " bytes; this router takes at most 65536 bytes of text (16 bytes per token of the model's 4096-token context)");
                });
        // a text of exactly the limit is tokenized; then its tokens are checked against the context
        GenerateRequest atLimit = req.toBuilder().setText("ab ".repeat((int) limit / 3) + "a".repeat((int) limit % 3)).build();
        assertThat(atLimit.getTextBytes().size()).isEqualTo(limit);
        assertThatThrownBy(() -> GenerateClusterTest.collect(Clusters.stub(channel).generate(atLimit)))
                .isInstanceOfSatisfying(StatusRuntimeException.class, e -> {
                    assertThat(e.getStatus().getCode()).isEqualTo(Status.Code.INVALID_ARGUMENT);
                    assertThat(e.getStatus().getDescription()).contains("tokens but the model's context is 4096 tokens");
                });
    }

    @Test
    void aCancelledRequestLeavesTheQueueAtOnce() throws Exception {
        var config = RouterConfig.defaults(dir, cluster.placement())
                .withGeneration(GenerationConfig.defaults().withMaxActiveSequences(1));
        try (RouterServer router = RouterServer.start(config)) {
            ManagedChannel ch = Clusters.channel(router.address());
            GenerationScheduler scheduler = router.scheduler();
            Context.CancellableContext running = Context.current().withCancellation();
            Context.CancellableContext waiting = Context.current().withCancellation();
            try {
                Iterator<GenerateResponse> a = running.call(() -> Clusters.stub(ch).generate(greedy(new int[] {1, 2}, 4000)));
                a.next();
                Iterator<GenerateResponse> b = waiting.call(() -> Clusters.stub(ch).generate(greedy(new int[] {3, 4}, 10)));
                long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
                while (scheduler.queuedRequests() == 0 && System.nanoTime() < deadline) {
                    Thread.sleep(5);
                }
                assertThat(scheduler.queuedRequests()).isEqualTo(1);
                waiting.cancel(null);
                assertThatThrownBy(b::hasNext).isInstanceOf(StatusRuntimeException.class);
                while (scheduler.requestsInFlight() > 1 && System.nanoTime() < deadline) {
                    Thread.sleep(5);
                }
                // gone while the one sequence slot is still taken by the 4,000-token stream
                assertThat(scheduler.queuedRequests()).isZero();
                assertThat(scheduler.requestsInFlight()).isEqualTo(1);
                assertThat(scheduler.activeSequences()).isEqualTo(1);
                running.cancel(null);
                awaitIdle(scheduler);
            } finally {
                running.cancel(null);
                ch.shutdownNow();
            }
        }
    }
}
