package dev.moecluster.client;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.moecluster.proto.FinishReason;
import dev.moecluster.proto.GenerateRequest;
import dev.moecluster.proto.GenerateResponse;
import dev.moecluster.proto.MoeForwardRequest;
import dev.moecluster.proto.MoeForwardResponse;
import dev.moecluster.proto.RouterGrpc;
import dev.moecluster.proto.SamplingParams;
import dev.moecluster.proto.Usage;
import io.grpc.Metadata;
import io.grpc.Server;
import io.grpc.ServerCall;
import io.grpc.ServerCallHandler;
import io.grpc.ServerInterceptor;
import io.grpc.ServerInterceptors;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.netty.shaded.io.grpc.netty.NettyServerBuilder;
import io.grpc.stub.ServerCallStreamObserver;
import io.grpc.stub.StreamObserver;
import java.net.InetSocketAddress;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.IntFunction;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

/**
 * The client's own rules (which calls are retried, how the deadline bounds them, the token header, the
 * stream's cancellation) against a scripted Router service over real gRPC on loopback, where a test can
 * make the router answer UNAVAILABLE on cue. Round trips against a real cluster are in cli's
 * MoeClientClusterTest.
 */
class MoeClientTest {
    private static final MoeForwardResponse ANSWER = MoeForwardResponse.newBuilder().addSelectedExperts(3).build();

    /** What the scripted router answers the n-th (1-based) MoeForward call with: null for ANSWER. */
    private volatile IntFunction<Status> moeForwardFailure = n -> null;
    private final AtomicInteger moeForwardCalls = new AtomicInteger();
    private final AtomicInteger generateCalls = new AtomicInteger();
    private final ConcurrentLinkedQueue<String> authorizations = new ConcurrentLinkedQueue<>();
    /** Generate: how the scripted router answers. */
    private volatile GenerateScript generateScript = GenerateScript.THREE_CHUNKS;
    private final CountDownLatch generateCancelled = new CountDownLatch(1);
    private Server server;

    private enum GenerateScript { THREE_CHUNKS, UNAVAILABLE, ONE_CHUNK_THEN_HOLD, HOLD }

    private final class ScriptedRouter extends RouterGrpc.RouterImplBase {
        @Override
        public void moeForward(MoeForwardRequest request, StreamObserver<MoeForwardResponse> out) {
            Status failure = moeForwardFailure.apply(moeForwardCalls.incrementAndGet());
            if (failure != null) {
                out.onError(failure.asRuntimeException());
            } else {
                out.onNext(ANSWER);
                out.onCompleted();
            }
        }

        @Override
        public void generate(GenerateRequest request, StreamObserver<GenerateResponse> out) {
            generateCalls.incrementAndGet();
            ((ServerCallStreamObserver<GenerateResponse>) out).setOnCancelHandler(generateCancelled::countDown);
            switch (generateScript) {
                case THREE_CHUNKS -> {
                    out.onNext(GenerateResponse.newBuilder().addTokenIds(5).setText("Hel").build());
                    out.onNext(GenerateResponse.newBuilder().addTokenIds(6).addTokenIds(7).setText("lo w").build());
                    out.onNext(GenerateResponse.newBuilder().addTokenIds(8).setText("orld")
                            .setFinishReason(FinishReason.FINISH_REASON_LENGTH)
                            .setUsage(Usage.newBuilder().setPromptTokens(2).setCompletionTokens(4)).build());
                    out.onCompleted();
                }
                case UNAVAILABLE -> out.onError(Status.UNAVAILABLE.withDescription("draining").asRuntimeException());
                case ONE_CHUNK_THEN_HOLD -> out.onNext(GenerateResponse.newBuilder().addTokenIds(5).setText("Hel").build());
                case HOLD -> { }
            }
        }
    }

    private MoeClient.Builder client() throws Exception {
        ServerInterceptor recordAuthorization = new ServerInterceptor() {
            @Override
            public <Q, R> ServerCall.Listener<Q> interceptCall(ServerCall<Q, R> call, Metadata headers, ServerCallHandler<Q, R> next) {
                String a = headers.get(BearerCredentials.AUTHORIZATION);
                authorizations.add(a == null ? "(none)" : a);
                return next.startCall(call, headers);
            }
        };
        server = NettyServerBuilder.forAddress(new InetSocketAddress("127.0.0.1", 0))
                .addService(ServerInterceptors.intercept(new ScriptedRouter(), recordAuthorization))
                .build().start();
        return MoeClient.builder("127.0.0.1:" + server.getPort()).retries(3, Duration.ofMillis(1));
    }

    @AfterEach
    void stopServer() {
        if (server != null) {
            server.shutdownNow();
        }
    }

    @Test
    void moeForwardIsSentAgainAfterUnavailableUntilItSucceeds() throws Exception {
        moeForwardFailure = n -> n <= 2 ? Status.UNAVAILABLE.withDescription("restarting") : null;
        try (MoeClient client = client().build()) {
            assertThat(client.moeForward(MoeForwardRequest.getDefaultInstance())).isEqualTo(ANSWER);
        }
        assertThat(moeForwardCalls).hasValue(3);
    }

    @Test
    void unavailableOnEveryAttemptEndsWithTheRoutersStatusAndTheAttemptCount() throws Exception {
        moeForwardFailure = n -> Status.UNAVAILABLE.withDescription("expert 3 of layer 0 is unavailable");
        try (MoeClient client = client().build()) {
            assertThatThrownBy(() -> client.moeForward(MoeForwardRequest.getDefaultInstance()))
                    .isInstanceOfSatisfying(StatusRuntimeException.class, e -> {
                        assertThat(e.getStatus().getCode()).isEqualTo(Status.Code.UNAVAILABLE);
                        assertThat(e.getStatus().getDescription())
                                .startsWith("expert 3 of layer 0 is unavailable").endsWith("(after 3 attempts)");
                    });
        }
        assertThat(moeForwardCalls).hasValue(3);
    }

    @Test
    void otherFailuresAreNotRetried() throws Exception {
        moeForwardFailure = n -> Status.INVALID_ARGUMENT.withDescription("layer 7 is not a sparse-MoE layer");
        try (MoeClient client = client().build()) {
            assertThatThrownBy(() -> client.moeForward(MoeForwardRequest.getDefaultInstance()))
                    .isInstanceOfSatisfying(StatusRuntimeException.class, e -> {
                        assertThat(e.getStatus().getCode()).isEqualTo(Status.Code.INVALID_ARGUMENT);
                        assertThat(e.getStatus().getDescription()).isEqualTo("layer 7 is not a sparse-MoE layer");
                    });
        }
        assertThat(moeForwardCalls).hasValue(1);
    }

    @Test
    void oneAttemptTurnsRetriesOff() throws Exception {
        moeForwardFailure = n -> Status.UNAVAILABLE.withDescription("restarting");
        try (MoeClient client = client().retries(1, Duration.ZERO).build()) {
            assertThatThrownBy(() -> client.moeForward(MoeForwardRequest.getDefaultInstance()))
                    .isInstanceOfSatisfying(StatusRuntimeException.class,
                            e -> assertThat(e.getStatus().getDescription()).isEqualTo("restarting"));
        }
        assertThat(moeForwardCalls).hasValue(1);
    }

    @Test
    void noAttemptStartsThatTheDeadlineCouldNotAllow() throws Exception {
        moeForwardFailure = n -> Status.UNAVAILABLE.withDescription("restarting");
        // the first wait (at least 5 s) is past the 2 s deadline: one attempt, and the status says why
        try (MoeClient client = client().retries(10, Duration.ofSeconds(10)).deadline(Duration.ofSeconds(2)).build()) {
            assertThatThrownBy(() -> client.moeForward(MoeForwardRequest.getDefaultInstance()))
                    .isInstanceOfSatisfying(StatusRuntimeException.class, e -> {
                        assertThat(e.getStatus().getCode()).isEqualTo(Status.Code.UNAVAILABLE);
                        assertThat(e.getStatus().getDescription())
                                .endsWith("(after 1 attempt; the deadline leaves no time for another)");
                    });
        }
        assertThat(moeForwardCalls).hasValue(1);
    }

    @Test
    void generateIsNeverRetried() throws Exception {
        generateScript = GenerateScript.UNAVAILABLE;
        try (MoeClient client = client().build(); GenerateStream stream = client.generate("hi", SamplingParams.getDefaultInstance())) {
            assertThatThrownBy(stream::hasNext).isInstanceOfSatisfying(StatusRuntimeException.class,
                    e -> assertThat(e.getStatus().getCode()).isEqualTo(Status.Code.UNAVAILABLE));
        }
        assertThat(generateCalls).hasValue(1);
    }

    @Test
    void generateStreamsTheChunksAndReadAllJoinsThem() throws Exception {
        try (MoeClient client = client().build()) {
            try (GenerateStream stream = client.generate("hi", SamplingParams.getDefaultInstance())) {
                assertThat(stream.stream().map(GenerateResponse::getText).toList()).containsExactly("Hel", "lo w", "orld");
            }
            GenerateStream.Completion all = client.generate("hi", SamplingParams.getDefaultInstance()).readAll();
            assertThat(all.tokenIds()).containsExactly(5, 6, 7, 8);
            assertThat(all.text()).isEqualTo("Hello world");
            assertThat(all.finishReason()).isEqualTo(FinishReason.FINISH_REASON_LENGTH);
            assertThat(all.usage().getCompletionTokens()).isEqualTo(4);
        }
    }

    @Test
    void closingAStreamEarlyCancelsTheGenerationOnTheRouter() throws Exception {
        generateScript = GenerateScript.ONE_CHUNK_THEN_HOLD;
        try (MoeClient client = client().build()) {
            GenerateStream stream = client.generate("hi", SamplingParams.getDefaultInstance());
            assertThat(stream.next().getText()).isEqualTo("Hel");
            stream.close();
            assertThat(generateCancelled.await(30, TimeUnit.SECONDS)).as("the router saw the cancellation").isTrue();
        }
    }

    @Test
    void aStreamPastItsDeadlineEndsWithDeadlineExceeded() throws Exception {
        generateScript = GenerateScript.HOLD;
        try (MoeClient client = client().deadline(Duration.ofMillis(300)).build();
                GenerateStream stream = client.generate("hi", SamplingParams.getDefaultInstance())) {
            assertThatThrownBy(stream::hasNext).isInstanceOfSatisfying(StatusRuntimeException.class,
                    e -> assertThat(e.getStatus().getCode()).isEqualTo(Status.Code.DEADLINE_EXCEEDED));
        }
    }

    @Test
    void theBearerTokenGoesOnEveryCallAndNothingWithoutOne(@org.junit.jupiter.api.io.TempDir Path dir) throws Exception {
        MoeClient.Builder builder = client();
        try (MoeClient client = builder.bearerToken(" s3cret-token\n").build()) {
            client.moeForward(MoeForwardRequest.getDefaultInstance());
            client.generate("hi", SamplingParams.getDefaultInstance()).readAll();
        }
        Path file = Files.writeString(dir.resolve("token"), "\n  from-file-token \nsecond-token\n");
        try (MoeClient client = builder.bearerTokenFile(file).build()) {
            client.moeForward(MoeForwardRequest.getDefaultInstance());
        }
        try (MoeClient client = MoeClient.builder("127.0.0.1:" + server.getPort()).build()) {
            client.moeForward(MoeForwardRequest.getDefaultInstance());
        }
        assertThat(authorizations).containsExactly("Bearer s3cret-token", "Bearer s3cret-token", "Bearer from-file-token", "(none)");
    }

    @Test
    void badSettingsAreRefusedWhenBuilding(@org.junit.jupiter.api.io.TempDir Path dir) throws Exception {
        MoeClient.Builder b = MoeClient.builder("127.0.0.1:1");
        assertThatThrownBy(() -> b.bearerToken("two words")).isInstanceOf(IllegalArgumentException.class)
                .hasMessage("bearer token must be printable ASCII without spaces");
        assertThatThrownBy(() -> b.bearerToken("  ")).hasMessage("bearer token is empty");
        Path empty = Files.writeString(dir.resolve("empty"), "\n\n");
        assertThatThrownBy(() -> b.bearerTokenFile(empty)).hasMessage("bearer token file " + empty + " is empty");
        assertThatThrownBy(() -> b.bearerTokenFile(dir.resolve("missing"))).hasMessageContaining("cannot read bearer token file");
        assertThatThrownBy(() -> b.deadline(Duration.ZERO)).hasMessageContaining("deadline must be positive");
        assertThatThrownBy(() -> b.retries(0, Duration.ZERO)).hasMessage("attempts must be at least 1, got 0");
        assertThatThrownBy(() -> MoeClient.builder(" ")).hasMessageContaining("target is empty");
        Path missingCa = dir.resolve("no-ca.pem");
        assertThatThrownBy(() -> MoeClient.builder("127.0.0.1:1").tls(missingCa).build())
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("cannot read TLS files (CA " + missingCa);
    }

    /** Clients in other languages take the .proto files from the client's jar, under their import names. */
    @Test
    void theJarCarriesTheProtoFilesAsTheProtoModuleHasThem() throws Exception {
        Path classes = Path.of(MoeClient.class.getProtectionDomain().getCodeSource().getLocation().toURI());
        Path source = Path.of(System.getProperty("user.dir")).resolve("../proto/src/main/proto");
        List<Path> protos;
        try (var files = Files.walk(source)) {
            protos = files.filter(p -> p.toString().endsWith(".proto")).toList();
        }
        assertThat(protos).isNotEmpty();
        for (Path p : protos) {
            Path shipped = classes.resolve(source.relativize(p).toString());
            assertThat(shipped).as("%s in the client's jar", source.relativize(p)).exists();
            assertThat(Files.readString(shipped)).isEqualTo(Files.readString(p));
        }
    }
}
