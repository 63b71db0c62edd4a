package dev.moecluster.cli;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.moecluster.client.GenerateStream;
import dev.moecluster.client.MoeClient;
import dev.moecluster.control.BearerToken;
import dev.moecluster.core.model.Architecture;
import dev.moecluster.core.model.ModelConfig;
import dev.moecluster.core.moe.ReferenceMoeBlock;
import dev.moecluster.core.runner.DecoderModel;
import dev.moecluster.core.tensor.DType;
import dev.moecluster.core.tensor.FloatMatrix;
import dev.moecluster.proto.FinishReason;
import dev.moecluster.proto.GenerateRequest;
import dev.moecluster.proto.MoeForwardResponse;
import dev.moecluster.proto.SamplingParams;
import dev.moecluster.worker.CpuBackend;
import io.grpc.ManagedChannel;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.reflection.v1alpha.ServerReflectionGrpc;
import io.grpc.reflection.v1alpha.ServerReflectionRequest;
import io.grpc.reflection.v1alpha.ServerReflectionResponse;
import io.grpc.stub.StreamObserver;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;

/** {@link MoeClient} against a real local cluster over loopback: results, tokens, deadlines and retries. */
class MoeClientClusterTest {
    private static final String TOKEN = "client-test-token-81d3";

    private static LocalCluster.Options withToken(LocalCluster.Options o) {
        return o.withRouterSettings(rc -> rc.withAuthToken(BearerToken.of(TOKEN)));
    }

    @Test
    void moeForwardAndGenerateRoundTripToTheReferenceWithTheToken() throws Exception {
        Path dir = Clusters.tinyModel(Architecture.MIXTRAL);
        try (LocalCluster cluster = LocalCluster.start(withToken(LocalCluster.Options.of(dir, 3, 1)));
                ReferenceMoeBlock reference = ReferenceMoeBlock.open(dir);
                DecoderModel decoder = DecoderModel.open(dir);
                MoeClient client = MoeClient.builder(cluster.router().address()).bearerToken(TOKEN).build()) {
            ModelConfig cfg = cluster.model();
            assertThat(client.modelInfo().getNumExperts()).isEqualTo(8);
            assertThat(client.modelInfo().getMoeLayersList()).containsExactlyElementsOf(cfg.moeLayerList());
            for (int layer : cfg.moeLayerList()) {
                for (DType dtype : List.of(DType.F32, DType.BF16)) {
                    FloatMatrix x = Clusters.hidden(cfg, 9, layer * 7 + 5, dtype);
                    MoeForwardResponse resp = client.moeForward(Clusters.request(layer, x, dtype));
                    ReferenceMoeBlock.Result ref = reference.forward(layer, x);
                    assertThat(resp.getOutput().getDtype().name()).isEqualTo(dtype.name());
                    assertThat(Clusters.relativeError(Clusters.output(resp), ref.output()))
                            .as("layer %d %s", layer, dtype).isLessThan(dtype == DType.F32 ? 1e-5 : 1e-2);
                    assertThat(resp.getSelectedExpertsList()).as("layer %d %s", layer, dtype)
                            .containsExactlyElementsOf(Arrays.stream(ref.gate().experts()).boxed().toList());
                }
            }
            int[] prompt = {3, 14, 15, 9, 2};
            GenerateRequest greedy = GenerateClusterTest.greedy(prompt, 10);
            int eos = cfg.raw().get("eos_token_id").getAsInt();
            GenerateStream.Completion done = client.generate(greedy).readAll();
            List<Integer> expected = GenerateClusterTest.referenceTokens(decoder, prompt, 10, eos);
            assertThat(done.tokenIds()).isEqualTo(expected);
            assertThat(done.usage().getPromptTokens()).isEqualTo(prompt.length);
            assertThat(done.usage().getCompletionTokens()).isEqualTo(expected.size());
            assertThat(done.finishReason()).isEqualTo(expected.size() < 10 ? FinishReason.FINISH_REASON_STOP : FinishReason.FINISH_REASON_LENGTH);
            // the streamed chunks add up to the same tokens
            try (GenerateStream stream = client.generate(greedy)) {
                assertThat(stream.stream().flatMap(r -> r.getTokenIdsList().stream()).toList()).isEqualTo(expected);
            }
        }
    }

    @Test
    void missingOrWrongTokenIsUnauthenticatedAndNotRetried() throws Exception {
        Path dir = Clusters.tinyModel(Architecture.MIXTRAL);
        try (LocalCluster cluster = LocalCluster.start(withToken(LocalCluster.Options.of(dir, 2, 1)));
                MoeClient noToken = MoeClient.builder(cluster.router().address()).build();
                MoeClient wrongToken = MoeClient.builder(cluster.router().address()).bearerToken(TOKEN + "x").build()) {
            FloatMatrix x = Clusters.hidden(cluster.model(), 4, 1, DType.F32);
            assertThatThrownBy(() -> noToken.moeForward(Clusters.request(0, x, DType.F32)))
                    .isInstanceOfSatisfying(StatusRuntimeException.class, e -> {
                        assertThat(e.getStatus().getCode()).isEqualTo(Status.Code.UNAUTHENTICATED);
                        assertThat(e.getStatus().getDescription()).isEqualTo("missing bearer token");
                    });
            assertThatThrownBy(() -> wrongToken.modelInfo())
                    .isInstanceOfSatisfying(StatusRuntimeException.class, e -> {
                        assertThat(e.getStatus().getCode()).isEqualTo(Status.Code.UNAUTHENTICATED);
                        assertThat(e.getStatus().getDescription()).isEqualTo("invalid bearer token");
                    });
            try (GenerateStream stream = wrongToken.generate("hello", SamplingParams.newBuilder().setMaxTokens(2).build())) {
                assertThatThrownBy(stream::hasNext).isInstanceOfSatisfying(StatusRuntimeException.class,
                        e -> assertThat(e.getStatus().getCode()).isEqualTo(Status.Code.UNAUTHENTICATED));
            }
            // each refused call reached the router once
            Exposition metrics = Exposition.scrape(cluster.router().metricsPort());
            assertThat(metrics.sum("moe_router_requests_total", s -> s.is("code", "UNAUTHENTICATED"))).isEqualTo(3);
        }
    }

    @Test
    void aCallPastItsDeadlineEndsDeadlineExceededAndTheClusterKeepsServing() throws Exception {
        Path dir = Clusters.tinyModel(Architecture.MIXTRAL);
        GatedBackend gated = new GatedBackend();
        var options = LocalCluster.Options.of(dir, 2, 1).withBackends(i -> i == 0 ? gated : new CpuBackend());
        try (LocalCluster cluster = LocalCluster.start(options);
                ReferenceMoeBlock reference = ReferenceMoeBlock.open(dir);
                MoeClient impatient = MoeClient.builder(cluster.router().address()).deadline(Duration.ofSeconds(1)).build()) {
            FloatMatrix x = Clusters.hidden(cluster.model(), 64, 21, DType.F32);
            gated.arm();
            try {
                // worker-0 holds the rows until released: the call cannot finish within its deadline
                assertThatThrownBy(() -> impatient.moeForward(Clusters.request(0, x, DType.F32)))
                        .isInstanceOfSatisfying(StatusRuntimeException.class,
                                e -> assertThat(e.getStatus().getCode()).isEqualTo(Status.Code.DEADLINE_EXCEEDED));
                assertThat(gated.awaitEntered()).as("the rows reached worker-0").isTrue();
            } finally {
                gated.release();
            }
            try (MoeClient client = MoeClient.builder(cluster.router().address()).build()) {
                FloatMatrix y = Clusters.output(client.moeForward(Clusters.request(0, x, DType.F32)));
                assertThat(Clusters.relativeError(y, reference.forward(0, x).output())).isLessThan(1e-5);
            }
        }
    }

    @Test
    void moeForwardIsRetriedWhileItsOnlyWorkerIsGoneAndTheStatusNamesTheAttempts() throws Exception {
        Path dir = Clusters.tinyModel(Architecture.MIXTRAL);
        try (LocalCluster cluster = LocalCluster.start(LocalCluster.Options.of(dir, 2, 1));
                MoeClient client = MoeClient.builder(cluster.router().address()).retries(3, Duration.ofMillis(20)).build()) {
            String dead = cluster.workers().getFirst().address();
            cluster.workers().getFirst().kill();
            // 64 rows over 8 experts: some row is routed to an expert only worker-0 held
            FloatMatrix x = Clusters.hidden(cluster.model(), 64, 23, DType.F32);
            assertThatThrownBy(() -> client.moeForward(Clusters.request(0, x, DType.F32)))
                    .isInstanceOfSatisfying(StatusRuntimeException.class, e -> {
                        assertThat(e.getStatus().getCode()).isEqualTo(Status.Code.UNAVAILABLE);
                        assertThat(e.getStatus().getDescription()).contains(dead).endsWith("(after 3 attempts)");
                    });
            Exposition metrics = Exposition.scrape(cluster.router().metricsPort());
            assertThat(metrics.sum("moe_router_requests_total", s -> s.is("method", "MoeForward") && s.is("code", "UNAVAILABLE")))
                    .isEqualTo(3);
        }
    }

    /** Older grpcurl, grpc_cli and Postman releases list services over reflection v1alpha only. */
    @Test
    @SuppressWarnings("deprecation")
    void routerWorkerAndCoordinatorListTheirServicesOverReflectionV1Alpha() throws Exception {
        Path dir = Clusters.tinyModel(Architecture.MIXTRAL);
        try (LocalCluster cluster = LocalCluster.start(LocalCluster.Options.of(dir, 1, 1).withCoordinator(true))) {
            assertThat(listServices(cluster.router().address())).contains("moe.v1.Router", "grpc.health.v1.Health");
            assertThat(listServices(cluster.workers().getFirst().address())).contains("moe.v1.ExpertService");
            assertThat(listServices("127.0.0.1:" + cluster.coordinator().adminPort())).contains("moe.v1.Admin");
        }
    }

    @SuppressWarnings("deprecation")
    private static List<String> listServices(String address) throws Exception {
        ManagedChannel channel = Clusters.channel(address);
        try {
            LinkedBlockingQueue<ServerReflectionResponse> answers = new LinkedBlockingQueue<>();
            CompletableFuture<Void> ended = new CompletableFuture<>();
            StreamObserver<ServerReflectionRequest> requests = ServerReflectionGrpc.newStub(channel)
                    .withDeadlineAfter(30, TimeUnit.SECONDS).serverReflectionInfo(new StreamObserver<>() {
                        @Override
                        public void onNext(ServerReflectionResponse value) {
                            answers.add(value);
                        }

                        @Override
                        public void onError(Throwable t) {
                            ended.completeExceptionally(t);
                        }

                        @Override
                        public void onCompleted() {
                            ended.complete(null);
                        }
                    });
            requests.onNext(ServerReflectionRequest.newBuilder().setListServices("").build());
            requests.onCompleted();
            ended.get(30, TimeUnit.SECONDS);
            return answers.stream().flatMap(a -> a.getListServicesResponse().getServiceList().stream())
                    .map(s -> s.getName()).toList();
        } finally {
            channel.shutdownNow();
        }
    }
}
