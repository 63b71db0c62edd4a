package dev.moecluster.cli;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.moecluster.core.model.Architecture;
import dev.moecluster.core.runner.DecoderModel;
import dev.moecluster.core.runner.KvCache;
import dev.moecluster.proto.FinishReason;
import dev.moecluster.proto.GenerateRequest;
import dev.moecluster.proto.GenerateResponse;
import dev.moecluster.proto.RouterGrpc;
import dev.moecluster.proto.SamplingParams;
import dev.moecluster.proto.TokenIds;
import dev.moecluster.router.generate.TextTokenizer;
import io.grpc.ManagedChannel;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Iterator;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.stream.IntStream;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/** Generate through a real cluster agrees with the in-process reference model, token for token. */
class GenerateClusterTest {

    /** Prompts of several lengths; the longest crosses the tiny Llama 4's 16-token attention chunk. */
    private static List<int[]> prompts(int vocab) {
        List<int[]> out = new ArrayList<>();
        for (int len : new int[] {1, 5, 24}) {
            int[] p = new int[len];
            for (int i = 0; i < len; i++) {
                p[i] = (i * 37 + len * 11 + 3) % (vocab - 8);
            }
            out.add(p);
        }
        return out;
    }

    static GenerateRequest greedy(int[] prompt, int maxTokens) {
        return GenerateRequest.newBuilder()
                .setTokenIds(TokenIds.newBuilder().addAllIds(Arrays.stream(prompt).boxed().toList()))
                .setSampling(SamplingParams.newBuilder().setMaxTokens(maxTokens).setTemperature(0f))
                .build();
    }

    /** The generated ids of a finished stream, and its last message. */
    record Generated(List<Integer> ids, GenerateResponse last, String text) {}

    static Generated collect(Iterator<GenerateResponse> stream) {
        List<Integer> ids = new ArrayList<>();
        StringBuilder text = new StringBuilder();
        GenerateResponse last = null;
        while (stream.hasNext()) {
            last = stream.next();
            ids.addAll(last.getTokenIdsList());
            text.append(last.getText());
        }
        return new Generated(ids, last, text.toString());
    }

    /** The reference's greedy tokens, cut after the first end-of-sequence id (which the API does not return). */
    /** The in-process model's greedy tokens up to {@code eos}, with keys and values in bf16 as the router keeps them. */
    static List<Integer> referenceTokens(DecoderModel reference, int[] prompt, int n, int eos) {
        List<Integer> out = new ArrayList<>();
        for (int t : reference.generateGreedy(prompt, n, dev.moecluster.core.tensor.DType.BF16)) {
            if (t == eos) {
                break;
            }
            out.add(t);
        }
        return out;
    }

    @ParameterizedTest
    @EnumSource(value = Architecture.class, names = {"MIXTRAL", "QWEN3_MOE", "LLAMA4"})
    void greedyGenerationMatchesTheReferenceModel(Architecture arch) throws Exception {
        Path dir = Clusters.tinyModel(arch);
        try (LocalCluster cluster = LocalCluster.start(LocalCluster.Options.of(dir, 3, 1));
                DecoderModel reference = DecoderModel.open(dir)) {
            int eos = cluster.model().raw().get("eos_token_id").getAsInt();
            ManagedChannel channel = Clusters.channel(cluster.router().address());
            try {
                RouterGrpc.RouterBlockingStub stub = Clusters.stub(channel);
                for (int[] prompt : prompts(reference.vocabSize())) {
                    Generated g = collect(stub.generate(greedy(prompt, 12)));
                    List<Integer> expected = referenceTokens(reference, prompt, 12, eos);
                    assertThat(g.ids()).as("%s prompt of %d tokens", arch, prompt.length).isEqualTo(expected);
                    assertThat(g.last().getUsage().getPromptTokens()).isEqualTo(prompt.length);
                    assertThat(g.last().getFinishReason()).isEqualTo(expected.size() < 12
                            ? FinishReason.FINISH_REASON_STOP : FinishReason.FINISH_REASON_LENGTH);
                }
                // logits through the remote experts agree with the reference at every step
                int[] prompt = prompts(reference.vocabSize()).get(2);
                DecoderModel remote = cluster.router().decoder();
                KvCache rc = remote.newCache(prompt.length + 6);
                KvCache lc = reference.newCache(prompt.length + 6);
                float[] r = remote.forward(prompt, rc);
                float[] l = reference.forward(prompt, lc);
                for (int step = 0; step < 6; step++) {
                    assertThat(maxAbsDiff(r, l)).as("step %d", step).isLessThan(1e-4f);
                    int next = DecoderModel.argmax(l);
                    r = remote.forward(new int[] {next}, rc);
                    l = reference.forward(new int[] {next}, lc);
                }
            } finally {
                channel.shutdownNow();
            }
        }
    }

    @org.junit.jupiter.api.Test
    void concurrentStreamsGiveTheSameTokensAsAlone() throws Exception {
        Path dir = Clusters.tinyModel(Architecture.MIXTRAL);
        try (LocalCluster cluster = LocalCluster.start(LocalCluster.Options.of(dir, 3, 1))) {
            ManagedChannel channel = Clusters.channel(cluster.router().address());
            try {
                int vocab = cluster.router().decoder().vocabSize();
                List<int[]> prompts = IntStream.range(0, 16)
                        .mapToObj(i -> IntStream.range(0, 3 + i % 7).map(j -> (i * 13 + j * 7 + 1) % (vocab - 8)).toArray())
                        .toList();
                List<List<Integer>> alone = new ArrayList<>();
                for (int[] p : prompts) {
                    alone.add(collect(Clusters.stub(channel).generate(greedy(p, 10))).ids());
                }
                long stepsBefore = cluster.router().scheduler().steps();
                List<CompletableFuture<List<Integer>>> together = prompts.stream()
                        .map(p -> CompletableFuture.supplyAsync(() -> collect(Clusters.stub(channel).generate(greedy(p, 10))).ids()))
                        .toList();
                for (int i = 0; i < prompts.size(); i++) {
                    assertThat(together.get(i).get(60, TimeUnit.SECONDS)).as("stream %d", i).isEqualTo(alone.get(i));
                }
                long steps = cluster.router().scheduler().steps() - stepsBefore;
                // shared steps: far fewer than the 16 x 10 one stream at a time would need
                assertThat(steps).isLessThan(16 * 10);
            } finally {
                channel.shutdownNow();
            }
        }
    }

    @org.junit.jupiter.api.Test
    void textPromptsStreamDecodedTextAndStopStrings() throws Exception {
        Path dir = Clusters.tinyModel(Architecture.LLAMA4);
        try (LocalCluster cluster = LocalCluster.start(LocalCluster.Options.of(dir, 3, 1));
                TextTokenizer tokenizer = TextTokenizer.load(dir)) {
            ManagedChannel channel = Clusters.channel(cluster.router().address());
            try {
                GenerateRequest req = GenerateRequest.newBuilder().setText("Once upon a time")
                        .setSampling(SamplingParams.newBuilder().setMaxTokens(8).setTemperature(0f)).build();
                Generated g = collect(Clusters.stub(channel).generate(req));
                int[] ids = g.ids().stream().mapToInt(Integer::intValue).toArray();
                assertThat(g.text()).isEqualTo(tokenizer.decode(ids));
                // Llama 4's tokenizer prepends <|begin_of_text|> (bos_token_id), and decoding leaves it out
                int bos = cluster.model().raw().get("bos_token_id").getAsInt();
                int[] prompt = tokenizer.encode("Once upon a time");
                assertThat(prompt[0]).isEqualTo(bos);
                assertThat(tokenizer.decode(prompt)).isEqualTo("Once upon a time");
                assertThat(g.last().getUsage().getPromptTokens()).isEqualTo(tokenizer.encode("Once upon a time").length);
                // a stop string taken from the middle of that text ends generation before it
                String text = g.text();
                if (text.length() >= 3) {
                    String stop = text.substring(text.length() / 2, text.length() / 2 + 2);
                    GenerateRequest stopped = req.toBuilder().setSampling(req.getSampling().toBuilder().addStop(stop)).build();
                    Generated s = collect(Clusters.stub(channel).generate(stopped));
                    assertThat(s.text()).isEqualTo(text.substring(0, text.indexOf(stop)));
                    assertThat(s.last().getFinishReason()).isEqualTo(FinishReason.FINISH_REASON_STOP);
                }
                // sampling with a seed is reproducible
                GenerateRequest sampled = req.toBuilder().setSampling(SamplingParams.newBuilder().setMaxTokens(8)
                        .setTemperature(1.5f).setTopP(0.9f).setTopK(20).setSeed(1234)).build();
                assertThat(collect(Clusters.stub(channel).generate(sampled)).ids())
                        .isEqualTo(collect(Clusters.stub(channel).generate(sampled)).ids());
            } finally {
                channel.shutdownNow();
            }
        }
    }

    @org.junit.jupiter.api.Test
    void cancellingAStreamFreesItsSequenceAndTheServerKeepsServing() throws Exception {
        Path dir = Clusters.tinyModel(Architecture.MIXTRAL);
        try (LocalCluster cluster = LocalCluster.start(LocalCluster.Options.of(dir, 3, 1))) {
            ManagedChannel channel = Clusters.channel(cluster.router().address());
            try {
                var scheduler = cluster.router().scheduler();
                io.grpc.Context.CancellableContext ctx = io.grpc.Context.current().withCancellation();
                Iterator<GenerateResponse> stream = ctx.call(() -> RouterGrpc.newBlockingStub(channel).generate(greedy(new int[] {1, 2, 3}, 4000)));
                stream.next();
                stream.next();
                assertThat(scheduler.activeSequences()).isEqualTo(1);
                assertThat(scheduler.kvCacheReservedBytes()).isPositive();
                ctx.cancel(null);
                long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
                while ((scheduler.activeSequences() > 0 || scheduler.kvCacheReservedBytes() > 0) && System.nanoTime() < deadline) {
                    Thread.sleep(20);
                }
                assertThat(scheduler.activeSequences()).isZero();
                assertThat(scheduler.kvCacheReservedBytes()).isZero();
                assertThat(scheduler.generatedTokens()).isLessThan(4000);
                assertThat(collect(Clusters.stub(channel).generate(greedy(new int[] {4, 5}, 3))).ids()).hasSize(3);
            } finally {
                channel.shutdownNow();
            }
        }
    }

    @org.junit.jupiter.api.Test
    void badGenerateRequestsGetClearStatuses() throws Exception {
        Path dir = Clusters.tinyModel(Architecture.QWEN3_MOE);
        try (LocalCluster cluster = LocalCluster.start(LocalCluster.Options.of(dir, 3, 1))) {
            ManagedChannel channel = Clusters.channel(cluster.router().address());
            try {
                int context = cluster.model().raw().get("max_position_embeddings").getAsInt();
                rejected(channel, GenerateRequest.newBuilder().setText("").build(), Status.Code.INVALID_ARGUMENT, "prompt is empty");
                rejected(channel, GenerateRequest.getDefaultInstance(), Status.Code.INVALID_ARGUMENT, "prompt is empty");
                rejected(channel, greedy(new int[context], 1), Status.Code.INVALID_ARGUMENT,
                        "prompt has " + context + " tokens but the model's context is " + context);
                rejected(channel, greedy(new int[] {1}, 0), Status.Code.INVALID_ARGUMENT, "max_tokens must be positive, got 0");
                rejected(channel, greedy(new int[] {1}, -5), Status.Code.INVALID_ARGUMENT, "max_tokens must be positive");
                for (float topP : new float[] {0f, -0.1f, 1.5f}) {
                    GenerateRequest r = greedy(new int[] {1}, 2);
                    rejected(channel, r.toBuilder().setSampling(r.getSampling().toBuilder().setTopP(topP)).build(),
                            Status.Code.INVALID_ARGUMENT, "top_p must be in (0, 1]");
                }
                rejected(channel, greedy(new int[] {1}, 2).toBuilder().setModel("gpt-5").build(), Status.Code.NOT_FOUND,
                        "model 'gpt-5' is not served here");
                rejected(channel, greedy(new int[] {1, 999_999}, 2), Status.Code.INVALID_ARGUMENT, "token id 999999 is outside the vocabulary");
                assertThat(collect(Clusters.stub(channel).generate(greedy(new int[] {7, 8}, 2))).ids()).hasSize(2);
            } finally {
                channel.shutdownNow();
            }
            // a router whose KV budget holds 3 blocks of 16 tokens (and a half) refuses a request needing a
            // fourth block, and serves one that fills the three
            long perToken = cluster.router().decoder().kvBytesPerToken(dev.moecluster.core.tensor.DType.BF16);
            var small = dev.moecluster.router.RouterConfig.defaults(dir, cluster.placement()).withGeneration(
                    dev.moecluster.router.generate.GenerationConfig.defaults().withKvCacheBudgetBytes(56 * perToken));
            try (var router = dev.moecluster.router.RouterServer.start(small)) {
                ManagedChannel ch = Clusters.channel(router.address());
                try {
                    rejected(ch, greedy(new int[] {1, 2, 3}, 46), Status.Code.RESOURCE_EXHAUSTED,
                            "prompt + max_tokens need 49 tokens of KV cache (4 blocks");
                    GenerateRequest fits = greedy(new int[] {1, 2, 3}, 45);
                    fits = fits.toBuilder().setSampling(fits.getSampling().toBuilder().setIgnoreEos(true)).build();
                    assertThat(collect(Clusters.stub(ch).generate(fits)).ids()).hasSize(45);
                    // three requests of two blocks each in a pool of three: one runs at a time, the others
                    // wait for the blocks a finished one hands back, and all of them complete
                    List<CompletableFuture<Generated>> twoBlocks = IntStream.range(0, 3).mapToObj(i -> {
                        GenerateRequest r = greedy(new int[] {1, 2, 3 + i}, 26);
                        GenerateRequest ignoring = r.toBuilder().setSampling(r.getSampling().toBuilder().setIgnoreEos(true)).build();
                        return CompletableFuture.supplyAsync(() -> collect(Clusters.stub(ch).generate(ignoring)));
                    }).toList();
                    for (CompletableFuture<Generated> g : twoBlocks) {
                        assertThat(g.get(120, TimeUnit.SECONDS).ids()).hasSize(26);
                    }
                    assertThat(router.scheduler().kvBlockPool().totalBlocks()).isEqualTo(3);
                } finally {
                    ch.shutdownNow();
                }
            } finally {
                channel.shutdownNow();
            }
        }
    }

    private static void rejected(ManagedChannel channel, GenerateRequest request, Status.Code code, String text) {
        assertThatThrownBy(() -> collect(Clusters.stub(channel).generate(request)))
                .isInstanceOfSatisfying(StatusRuntimeException.class, e -> {
                    assertThat(e.getStatus().getCode()).isEqualTo(code);
                    assertThat(e.getStatus().getDescription()).contains(text);
                });
    }

    private static float maxAbsDiff(float[] a, float[] b) {
        float m = 0;
        for (int i = 0; i < a.length; i++) {
            m = Math.max(m, Math.abs(a[i] - b[i]));
        }
        return m;
    }
}
