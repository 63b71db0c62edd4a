package dev.moecluster.control;

import static java.util.Objects.requireNonNull;

import io.grpc.CallCredentials;
import io.grpc.Metadata;
import io.grpc.ServerCall;
import io.grpc.ServerCallHandler;
import io.grpc.ServerInterceptor;
import io.grpc.Status;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.AccessDeniedException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.concurrent.Executor;

/**
 * A shared secret sent as {@code authorization: Bearer <token>}: the server side checks it in
 * constant time ({@link #serverInterceptor()}), the client side attaches it ({@link #callCredentials()}).
 * Never printed.
 */
public final class BearerToken {
    static final Metadata.Key<String> AUTHORIZATION = Metadata.Key.of("authorization", Metadata.ASCII_STRING_MARSHALLER);
    private static final String SCHEME = "Bearer ";

    private final String token;
    private final byte[] digest;

    private BearerToken(String token) {
        this.token = token;
        this.digest = sha256(token);
    }

    /** A token given directly; it must be printable ASCII without spaces. */
    public static BearerToken of(String token) {
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
        return new BearerToken(t);
    }

    /**
     * The token in {@code file} (its whole content, surrounding whitespace trimmed).
     *
     * @throws IllegalArgumentException naming the file when it is missing, unreadable or empty
     */
    public static BearerToken readFrom(Path file) {
        requireNonNull(file, "file is null");
        String content;
        try {
            content = Files.readString(file, StandardCharsets.UTF_8);
        } catch (NoSuchFileException e) {
            throw new IllegalArgumentException("token file " + file + " does not exist", e);
        } catch (AccessDeniedException e) {
            throw new IllegalArgumentException("token file " + file + " cannot be read: permission denied", e);
        } catch (IOException e) {
            throw new IllegalArgumentException("token file " + file + " cannot be read: " + e.getMessage(), e);
        }
        try {
            return of(content);
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException("token file " + file + ": " + e.getMessage(), e);
        }
    }

    /** Whether {@code presented} is this token; takes the same time wherever they differ. */
    public boolean matches(String presented) {
        return presented != null && MessageDigest.isEqual(digest, sha256(presented));
    }

    /**
     * Refuses calls without this token: UNAUTHENTICATED "missing bearer token" when the header is
     * absent, "invalid bearer token" when it is wrong or not a bearer token.
     */
    public ServerInterceptor serverInterceptor() {
        return new ServerInterceptor() {
            @Override
            public <Q, R> ServerCall.Listener<Q> interceptCall(ServerCall<Q, R> call, Metadata headers,
                    ServerCallHandler<Q, R> next) {
                String value = headers.get(AUTHORIZATION);
                if (value != null && value.regionMatches(true, 0, SCHEME, 0, SCHEME.length())
                        && matches(value.substring(SCHEME.length()).strip())) {
                    return next.startCall(call, headers);
                }
                String refusal = value == null ? "missing bearer token" : "invalid bearer token";
                call.close(Status.UNAUTHENTICATED.withDescription(refusal), new Metadata());
                return new ServerCall.Listener<>() {};
            }
        };
    }

    /** Sends this token with every call. */
    public CallCredentials callCredentials() {
        return new CallCredentials() {
            @Override
            public void applyRequestMetadata(RequestInfo info, Executor appExecutor, MetadataApplier applier) {
                Metadata headers = new Metadata();
                headers.put(AUTHORIZATION, SCHEME + token);
                applier.apply(headers);
            }
        };
    }

    @Override
    public String toString() {
        return "BearerToken[redacted]";
    }

    private static byte[] sha256(String s) {
        try {
            // comparing digests keeps the comparison's time independent of where, and of how long, the inputs differ
            return MessageDigest.getInstance("SHA-256").digest(s.getBytes(StandardCharsets.UTF_8));
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException("every JDK has SHA-256", e);
        }
    }
}
