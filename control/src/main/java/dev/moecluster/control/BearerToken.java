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
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Executor;
import java.util.logging.Logger;

/**
 * A shared secret sent as {@code authorization: Bearer <token>}: the server side checks it in
 * constant time ({@link #serverInterceptor()}), the client side attaches it ({@link #callCredentials()}).
 * Never printed.
 *
 * <p>Read from a file, the token follows the file: one token per line, every line accepted (so a
 * rotation can accept the old and the new token while clients move over), the first one sent by
 * clients; a changed file is read again at most every {@value #RELOAD_CHECK_SECONDS} s, and a file that
 * does not check out (empty, half-written) leaves the previous tokens in use.
 */
public final class BearerToken {
    static final Metadata.Key<String> AUTHORIZATION = Metadata.Key.of("authorization", Metadata.ASCII_STRING_MARSHALLER);
    /** How often, at most, a check looks whether the token file changed. */
    static final long RELOAD_CHECK_SECONDS = 10;
    private static final Logger LOG = Logger.getLogger(BearerToken.class.getName());
    private static final String SCHEME = "Bearer ";

    /** The tokens in force: the first is the one clients send; all are accepted. */
    private record Tokens(String first, List<byte[]> digests) {}

    private final Path source;
    private final long checkNanos;
    private volatile Tokens tokens;
    private volatile Object stamp;
    private volatile long nextCheck;

    private BearerToken(Path source, Tokens tokens, Object stamp, Duration checkEvery) {
        this.source = source;
        this.tokens = tokens;
        this.stamp = stamp;
        this.checkNanos = checkEvery.toNanos();
        this.nextCheck = System.nanoTime() + checkNanos;
    }

    /** A token given directly; it must be printable ASCII without spaces. */
    public static BearerToken of(String token) {
        requireNonNull(token, "token is null");
        return new BearerToken(null, parse(token.strip()), null, Duration.ZERO);
    }

    /**
     * The tokens in {@code file}, one per line (surrounding whitespace and empty lines ignored), and
     * again whenever the file changes.
     *
     * @throws IllegalArgumentException naming the file when it is missing, unreadable, empty or malformed
     */
    public static BearerToken readFrom(Path file) {
        return readFrom(file, Duration.ofSeconds(RELOAD_CHECK_SECONDS));
    }

    static BearerToken readFrom(Path file, Duration checkEvery) {
        requireNonNull(file, "file is null");
        Object stamp = stamp(file);
        return new BearerToken(file, load(file), stamp, checkEvery);
    }

    private static Tokens load(Path file) {
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
            return parse(content);
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException("token file " + file + ": " + e.getMessage(), e);
        }
    }

    private static Tokens parse(String content) {
        List<String> lines = content.lines().map(String::strip).filter(l -> !l.isEmpty()).toList();
        if (lines.isEmpty()) {
            throw new IllegalArgumentException("bearer token is empty");
        }
        List<byte[]> digests = new ArrayList<>();
        for (String t : lines) {
            for (int i = 0; i < t.length(); i++) {
                char c = t.charAt(i);
                if (c < 0x21 || c > 0x7e) {
                    throw new IllegalArgumentException("bearer token must be printable ASCII without spaces");
                }
            }
            digests.add(sha256(t));
        }
        return new Tokens(lines.getFirst(), List.copyOf(digests));
    }

    private static Object stamp(Path file) {
        try {
            return List.of(Files.getLastModifiedTime(file), Files.size(file));
        } catch (IOException e) {
            return "unreadable"; // in the middle of a swap; looked at again at the next check
        }
    }

    /** The tokens in force, read again first when the file changed since the last check. */
    private Tokens current() {
        long now = System.nanoTime();
        if (source != null && now - nextCheck >= 0) {
            synchronized (this) {
                if (now - nextCheck >= 0) {
                    nextCheck = now + checkNanos;
                    Object seen = stamp(source);
                    if (!seen.equals(stamp)) {
                        try {
                            tokens = load(source);
                            stamp = seen;
                            LOG.info("bearer token file " + source + " changed: " + tokens.digests().size()
                                    + " token(s) now accepted");
                        } catch (IllegalArgumentException e) {
                            LOG.warning("bearer token file changed but is not usable (yet), the previous tokens stay: "
                                    + e.getMessage());
                        }
                    }
                }
            }
        }
        return tokens;
    }

    /** Whether {@code presented} is one of the tokens; takes the same time wherever they differ. */
    public boolean matches(String presented) {
        if (presented == null) {
            return false;
        }
        byte[] digest = sha256(presented);
        boolean match = false;
        for (byte[] accepted : current().digests()) {
            match |= MessageDigest.isEqual(accepted, digest); // no early exit: every token is compared
        }
        return match;
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
                if (matches(presented(headers))) {
                    return next.startCall(call, headers);
                }
                return refuse(call, Status.UNAUTHENTICATED.withDescription(
                        headers.containsKey(AUTHORIZATION) ? "invalid bearer token" : "missing bearer token"));
            }
        };
    }

    /** The token a call presents as {@code authorization: Bearer <token>}, or null when it presents none. */
    static String presented(Metadata headers) {
        String value = headers.get(AUTHORIZATION);
        if (value == null || !value.regionMatches(true, 0, SCHEME, 0, SCHEME.length())) {
            return null;
        }
        return value.substring(SCHEME.length()).strip();
    }

    /** Closes {@code call} with {@code status} before the service sees it. */
    static <Q, R> ServerCall.Listener<Q> refuse(ServerCall<Q, R> call, Status status) {
        call.close(status, new Metadata());
        return new ServerCall.Listener<>() {};
    }

    /** Sends the (first) token with every call. */
    public CallCredentials callCredentials() {
        return new CallCredentials() {
            @Override
            public void applyRequestMetadata(RequestInfo info, Executor appExecutor, MetadataApplier applier) {
                Metadata headers = new Metadata();
                headers.put(AUTHORIZATION, SCHEME + current().first());
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
