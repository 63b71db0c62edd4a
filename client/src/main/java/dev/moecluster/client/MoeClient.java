package dev.moecluster.client;

import static java.util.Objects.requireNonNull;

import dev.moecluster.proto.GenerateRequest;
import dev.moecluster.proto.GetModelInfoRequest;
import dev.moecluster.proto.ModelInfo;
import dev.moecluster.proto.MoeForwardRequest;
import dev.moecluster.proto.MoeForwardResponse;
import dev.moecluster.proto.RouterGrpc;
import dev.moecluster.proto.SamplingParams;
import io.grpc.CallCredentials;
import io.grpc.ChannelCredentials;
import io.grpc.Context;
import io.grpc.Deadline;
import io.grpc.Grpc;
import io.grpc.InsecureChannelCredentials;
import io.grpc.ManagedChannel;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.TlsChannelCredentials;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.TimeUnit;
import java.util.function.Supplier;

/**
 * A client of a moe-cluster router's {@code moe.v1.Router} API: one channel (plaintext or TLS, with an
 * optional client certificate and bearer token), a deadline on every call, and retries on UNAVAILABLE for
 * the idempotent calls ({@link #moeForward}, {@link #modelInfo}) only. Failures are the gRPC
 * {@link StatusRuntimeException} the call ended with. Thread-safe; close it to release the channel.
 */
public final class MoeClient implements AutoCloseable {
    private final String target;
    private final ManagedChannel channel;
    private final RouterGrpc.RouterBlockingStub stub;
    private final Duration deadline;
    private final RetryPolicy retry;

    private MoeClient(String target, ManagedChannel channel, CallCredentials credentials, Duration deadline, RetryPolicy retry) {
        this.target = target;
        this.channel = channel;
        RouterGrpc.RouterBlockingStub s = RouterGrpc.newBlockingStub(channel);
        this.stub = credentials == null ? s : s.withCallCredentials(credentials);
        this.deadline = deadline;
        this.retry = retry;
    }

    /** A builder for a client of the router at {@code target} ({@code host:port}, or any gRPC target URI). */
    public static Builder builder(String target) {
        return new Builder(target);
    }

    /** Describes the served model (retried on UNAVAILABLE). */
    public ModelInfo modelInfo() {
        return withRetries(d -> stub.withDeadline(d).getModelInfo(GetModelInfoRequest.getDefaultInstance()));
    }

    /**
     * Runs one sparse-MoE block on the request's hidden states. Expert computation is a pure function, so a
     * call that ends UNAVAILABLE (router restarting, experts briefly without a worker) is sent again, within
     * the one deadline for all attempts.
     */
    public MoeForwardResponse moeForward(MoeForwardRequest request) {
        requireNonNull(request, "request is null");
        return withRetries(d -> stub.withDeadline(d).moeForward(request));
    }

    /**
     * Starts generating for {@code request}; the tokens arrive as the stream is read. Not retried: a
     * sampled generation is not idempotent, and part of it may already have been read. The deadline covers
     * the whole stream; closing the stream early cancels the generation on the router.
     */
    public GenerateStream generate(GenerateRequest request) {
        requireNonNull(request, "request is null");
        Context.CancellableContext context = Context.current().withCancellation();
        Deadline d = Deadline.after(deadline.toNanos(), TimeUnit.NANOSECONDS);
        try {
            return new GenerateStream(context.call(() -> stub.withDeadline(d).generate(request)), context);
        } catch (RuntimeException e) {
            context.cancel(e);
            throw e;
        } catch (Exception e) {
            context.cancel(e);
            throw Status.INTERNAL.withCause(e).asRuntimeException();
        }
    }

    /** {@link #generate(GenerateRequest)} for a text prompt. */
    public GenerateStream generate(String prompt, SamplingParams sampling) {
        requireNonNull(prompt, "prompt is null");
        requireNonNull(sampling, "sampling is null");
        return generate(GenerateRequest.newBuilder().setText(prompt).setSampling(sampling).build());
    }

    private <T> T withRetries(java.util.function.Function<Deadline, T> call) {
        Deadline d = Deadline.after(deadline.toNanos(), TimeUnit.NANOSECONDS);
        return retry.run(d, () -> call.apply(d));
    }

    /** The channel's target, as given to the builder. */
    public String target() {
        return target;
    }

    /** Closes the channel; calls still in flight are cancelled. */
    @Override
    public void close() {
        channel.shutdownNow();
        try {
            channel.awaitTermination(5, TimeUnit.SECONDS);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    /**
     * How often a call that ended UNAVAILABLE is sent again: at most {@code maxAttempts} attempts, waiting
     * a random 50-100 % of a backoff that starts at {@code initialBackoff} and doubles up to 2 s between
     * them, never past the call's deadline.
     */
    record RetryPolicy(int maxAttempts, Duration initialBackoff) {
        static final Duration MAX_BACKOFF = Duration.ofSeconds(2);

        RetryPolicy {
            if (maxAttempts < 1) {
                throw new IllegalArgumentException("attempts must be at least 1, got " + maxAttempts);
            }
            requireNonNull(initialBackoff, "initialBackoff is null");
            if (initialBackoff.isNegative()) {
                throw new IllegalArgumentException("backoff must not be negative, got " + initialBackoff);
            }
        }

        <T> T run(Deadline deadline, Supplier<T> attempt) {
            long backoffNanos = initialBackoff.toNanos();
            for (int n = 1; ; n++) {
                try {
                    return attempt.get();
                } catch (StatusRuntimeException e) {
                    if (e.getStatus().getCode() != Status.Code.UNAVAILABLE || n == maxAttempts) {
                        throw n == 1 ? e : afterAttempts(e, n, "");
                    }
                    long wait = backoffNanos / 2 + ThreadLocalRandom.current().nextLong(backoffNanos / 2 + 1);
                    if (wait >= deadline.timeRemaining(TimeUnit.NANOSECONDS)) {
                        throw afterAttempts(e, n, "; the deadline leaves no time for another");
                    }
                    try {
                        TimeUnit.NANOSECONDS.sleep(wait);
                    } catch (InterruptedException ie) {
                        Thread.currentThread().interrupt();
                        throw Status.CANCELLED.withDescription("interrupted between attempts").withCause(ie).asRuntimeException();
                    }
                    backoffNanos = Math.min(backoffNanos * 2, MAX_BACKOFF.toNanos());
                }
            }
        }

        private static StatusRuntimeException afterAttempts(StatusRuntimeException e, int attempts, String why) {
            String tries = attempts + (attempts == 1 ? " attempt" : " attempts");
            return e.getStatus().augmentDescription("(after " + tries + why + ")").asRuntimeException(e.getTrailers());
        }
    }

    /** Settings of a {@link MoeClient}; plaintext, no token, a 60 s deadline and 3 attempts unless set. */
    public static final class Builder {
        /** Deadline of a call unless {@link #deadline} says otherwise. */
        public static final Duration DEFAULT_DEADLINE = Duration.ofSeconds(60);
        /** The router's own default limit, so a 64 MiB MoeForward answer is accepted. */
        public static final int DEFAULT_MAX_INBOUND_BYTES = 64 * 1024 * 1024;

        private final String target;
        private boolean tls;
        private Path caFile;
        private Path certFile;
        private Path keyFile;
        private String token;
        private Duration deadline = DEFAULT_DEADLINE;
        private int maxAttempts = 3;
        private Duration initialBackoff = Duration.ofMillis(100);
        private int maxInboundBytes = DEFAULT_MAX_INBOUND_BYTES;

        private Builder(String target) {
            requireNonNull(target, "target is null");
            if (target.isBlank()) {
                throw new IllegalArgumentException("target is empty: give host:port of the router");
            }
            this.target = target;
        }

        /** TLS, verifying the router with the JDK's trusted CAs. */
        public Builder tls() {
            this.tls = true;
            return this;
        }

        /** TLS, verifying the router with the PEM CA bundle in {@code caFile} (a router's {@code --tls-ca}). */
        public Builder tls(Path caFile) {
            this.caFile = requireNonNull(caFile, "caFile is null");
            this.tls = true;
            return this;
        }

        /** Presents a client certificate (PEM chain and its PKCS#8 key), for routers that require one; implies TLS. */
        public Builder clientCertificate(Path certFile, Path keyFile) {
            this.certFile = requireNonNull(certFile, "certFile is null");
            this.keyFile = requireNonNull(keyFile, "keyFile is null");
            this.tls = true;
            return this;
        }

        /** Sends {@code authorization: Bearer <token>} on every call, for a router started with {@code --auth-token-file}. */
        public Builder bearerToken(String token) {
            requireNonNull(token, "token is null");
            String t = token.strip();
            if (t.isEmpty()) {
                throw new IllegalArgumentException("bearer token is empty");
            }
            for (int i = 0; i < t.length(); i++) {
                char c = t.charAt(i);
                if (c < 0x21 || c > 0x7e) {
                    throw new IllegalArgumentException("bearer token must be printable ASCII without spaces");
                }
            }
            this.token = t;
            return this;
        }

        /** {@link #bearerToken(String)} with the first non-empty line of {@code file} (the router's token file format). */
        public Builder bearerTokenFile(Path file) {
            requireNonNull(file, "file is null");
            String content;
            try {
                content = Files.readString(file, StandardCharsets.UTF_8);
            } catch (IOException e) {
                throw new UncheckedIOException("cannot read bearer token file " + file + ": " + e.getMessage(), e);
            }
            return bearerToken(content.lines().map(String::strip).filter(l -> !l.isEmpty()).findFirst()
                    .orElseThrow(() -> new IllegalArgumentException("bearer token file " + file + " is empty")));
        }

        /** Deadline of every call: all attempts of a retried call, the whole stream of a generation. */
        public Builder deadline(Duration deadline) {
            requireNonNull(deadline, "deadline is null");
            if (deadline.isNegative() || deadline.isZero()) {
                throw new IllegalArgumentException("deadline must be positive, got " + deadline);
            }
            this.deadline = deadline;
            return this;
        }

        /**
         * Attempts of an idempotent call that ends UNAVAILABLE (1 turns retries off), and the first wait
         * between them; waits double up to 2 s, with jitter.
         */
        public Builder retries(int maxAttempts, Duration initialBackoff) {
            new RetryPolicy(maxAttempts, initialBackoff); // validates
            this.maxAttempts = maxAttempts;
            this.initialBackoff = initialBackoff;
            return this;
        }

        /** Largest response accepted (default 64 MiB, as the router's own limit). */
        public Builder maxInboundMessageBytes(int bytes) {
            if (bytes < 1024) {
                throw new IllegalArgumentException("max inbound message size is too small: " + bytes);
            }
            this.maxInboundBytes = bytes;
            return this;
        }

        /**
         * Opens the channel (lazily: the first call connects).
         *
         * @throws IllegalArgumentException naming the file when a TLS file cannot be read
         */
        public MoeClient build() {
            ManagedChannel channel = Grpc.newChannelBuilder(target, credentials())
                    .maxInboundMessageSize(maxInboundBytes)
                    .build();
            return new MoeClient(target, channel, token == null ? null : new BearerCredentials(token), deadline,
                    new RetryPolicy(maxAttempts, initialBackoff));
        }

        private ChannelCredentials credentials() {
            if (!tls) {
                return InsecureChannelCredentials.create();
            }
            TlsChannelCredentials.Builder b = TlsChannelCredentials.newBuilder();
            try {
                if (caFile != null) {
                    b.trustManager(caFile.toFile());
                }
                if (certFile != null) {
                    b.keyManager(certFile.toFile(), keyFile.toFile());
                }
            } catch (IOException e) {
                throw new IllegalArgumentException("cannot read TLS files (CA " + caFile + ", certificate " + certFile
                        + ", key " + keyFile + "): " + e.getMessage(), e);
            }
            return b.build();
        }
    }
}
