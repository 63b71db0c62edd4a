package dev.moecluster.control;

import static java.util.Objects.requireNonNull;

import dev.moecluster.proto.ControlGrpc;
import dev.moecluster.proto.PlacementUpdate;
import dev.moecluster.proto.RouterHeartbeatRequest;
import dev.moecluster.proto.SignedRecord;
import dev.moecluster.proto.WatchAssignmentRequest;
import dev.moecluster.proto.WatchPlacementRequest;
import dev.moecluster.proto.WorkerHeartbeatRequest;
import dev.moecluster.proto.WorkerHeartbeatResponse;
import io.grpc.CallCredentials;
import io.grpc.ChannelCredentials;
import io.grpc.ManagedChannel;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.netty.shaded.io.grpc.netty.NettyChannelBuilder;
import io.grpc.stub.ClientCallStreamObserver;
import io.grpc.stub.ClientResponseObserver;
import java.time.Duration;
import java.util.List;
import java.util.Optional;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.Consumer;
import java.util.function.Function;
import java.util.logging.Level;
import java.util.logging.Logger;

/**
 * A worker's or router's connection to the coordinators' {@code Control} API over gRPC, with the
 * component's TLS and role token. Calls go to one coordinator and move to the next one of the list when
 * it does not answer; watches (server streams) reopen by themselves. Starts without waiting for any
 * coordinator, and every call made while none answers returns empty and is logged, never thrown into
 * the data path: a component keeps serving on what it last knew. A refusal (wrong token, bad request)
 * is logged as a warning once per distinct message, since it will not heal by retrying.
 */
public final class ControlClient implements AutoCloseable {
    private static final Logger LOG = Logger.getLogger(ControlClient.class.getName());
    private static final long REOPEN_MILLIS = 500;

    private final ControlPlaneConfig config;
    private final String name;
    private final List<ControlGrpc.ControlBlockingStub> blocking;
    private final List<ControlGrpc.ControlStub> async;
    private final List<ManagedChannel> channels;
    private final AtomicInteger current = new AtomicInteger();
    private final ScheduledExecutorService timer;
    private final Set<ClientCallStreamObserver<?>> openWatches = ConcurrentHashMap.newKeySet();
    private final Set<String> refusalsLogged = ConcurrentHashMap.newKeySet();
    private final Duration callDeadline;
    private volatile boolean connected;
    private volatile boolean closed;

    private ControlClient(ControlPlaneConfig config, String name) {
        this.config = config;
        this.name = name;
        ChannelCredentials credentials = TlsConfig.channelCredentials(config.tls());
        CallCredentials token = config.token() == null ? null : config.token().callCredentials();
        this.channels = config.coordinators().stream()
                .map(address -> (ManagedChannel) NettyChannelBuilder.forTarget(address, credentials)
                        // a coordinator that vanished without closing its connection is noticed within ~15 s
                        .keepAliveTime(GrpcEndpoint.PERMIT_KEEPALIVE_SECONDS, TimeUnit.SECONDS)
                        .keepAliveTimeout(5, TimeUnit.SECONDS)
                        .keepAliveWithoutCalls(true)
                        .build())
                .toList();
        this.blocking = channels.stream().map(c -> ControlGrpc.newBlockingStub(c).withCallCredentials(token)).toList();
        this.async = channels.stream().map(c -> ControlGrpc.newStub(c).withCallCredentials(token)).toList();
        // a heartbeat that takes longer than a period is no heartbeat (the next coordinator is tried at once);
        // never wait less than a second
        this.callDeadline = Duration.ofMillis(Math.max(1000, config.heartbeatInterval().toMillis()));
        this.timer = Executors.newSingleThreadScheduledExecutor(
                r -> Thread.ofPlatform().name("moe-control-" + name).daemon().unstarted(r));
    }

    /** Connects lazily: the first call or watch opens a connection, and nothing waits for it here. */
    public static ControlClient connect(ControlPlaneConfig config, String name) {
        requireNonNull(config, "config is null");
        return new ControlClient(config, requireNonNull(name, "name is null"));
    }

    public ControlPlaneConfig config() {
        return config;
    }

    /** The last call reached a coordinator and was answered. */
    public boolean connected() {
        return connected;
    }

    /** Runs {@code action} now and then every {@code periodMillis} on the client's timer thread, skipping failures. */
    public void every(long periodMillis, Runnable action) {
        timer.scheduleWithFixedDelay(() -> {
            try {
                action.run();
            } catch (RuntimeException e) {
                LOG.log(Level.WARNING, name + ": periodic control-plane task failed (will run again)", e);
            }
        }, 0, periodMillis, TimeUnit.MILLISECONDS);
    }

    /** A worker's heartbeat; empty while no coordinator answers or when the call is refused. */
    public Optional<WorkerHeartbeatResponse> workerHeartbeat(WorkerHeartbeatRequest request) {
        return call(stub -> stub.workerHeartbeat(request));
    }

    /** A router's heartbeat, answered with the published placement; empty while no coordinator answers. */
    public Optional<PlacementUpdate> routerHeartbeat(RouterHeartbeatRequest request) {
        return call(stub -> stub.routerHeartbeat(request));
    }

    /** Calls {@code listener} with the assignment record of the worker at {@code address} each time the leader writes one. */
    public void watchAssignment(String address, Consumer<String> listener) {
        WatchAssignmentRequest request = WatchAssignmentRequest.newBuilder().setAddress(address).build();
        watch("assignment", (stub, observer) -> stub.watchAssignment(request, observer), (SignedRecord r) -> listener.accept(r.getJson()));
    }

    /** Calls {@code listener} with the published placement each time it changes. */
    public void watchPlacement(Consumer<PlacementUpdate> listener) {
        watch("placement", (stub, observer) -> stub.watchPlacement(WatchPlacementRequest.getDefaultInstance(), observer), listener);
    }

    /**
     * One call, to the current coordinator and, while they do not answer, to each of the others in turn:
     * a coordinator cut off from the rest stalls its writes, and a heartbeat must not wait for it to
     * find out (the leader would declare this component dead meanwhile).
     */
    private <T> Optional<T> call(Function<ControlGrpc.ControlBlockingStub, T> rpc) {
        for (int attempt = 0; attempt < channels.size(); attempt++) {
            int index = current.get();
            try {
                T answer = rpc.apply(blocking.get(index).withDeadlineAfter(callDeadline.toMillis(), TimeUnit.MILLISECONDS));
                connected = true;
                return Optional.of(answer);
            } catch (StatusRuntimeException e) {
                connected = false;
                if (!unreachable(e.getStatus())) {
                    refused(e.getStatus(), config.coordinators().get(index));
                    return Optional.empty();
                }
                moveOn(index);
                LOG.log(Level.FINE, name + ": coordinator " + config.coordinators().get(index) + " did not answer; trying the next", e);
            }
        }
        return Optional.empty();
    }

    private interface WatchCall<T> {
        void open(ControlGrpc.ControlStub stub, ClientResponseObserver<?, T> observer);
    }

    private <T> void watch(String what, WatchCall<T> open, Consumer<T> listener) {
        if (closed) {
            return;
        }
        int index = current.get();
        open.open(async.get(index), new ClientResponseObserver<Object, T>() {
            private ClientCallStreamObserver<Object> call;

            @Override
            public void beforeStart(ClientCallStreamObserver<Object> requestStream) {
                call = requestStream;
                openWatches.add(requestStream);
            }

            @Override
            public void onNext(T value) {
                try {
                    listener.accept(value);
                } catch (RuntimeException e) {
                    LOG.log(Level.WARNING, name + ": acting on a " + what + " update failed", e);
                }
            }

            @Override
            public void onError(Throwable t) {
                Status status = Status.fromThrowable(t);
                if (unreachable(status)) {
                    moveOn(index);
                } else if (status.getCode() != Status.Code.CANCELLED) {
                    refused(status, config.coordinators().get(index));
                }
                reopen();
            }

            @Override
            public void onCompleted() {
                reopen();
            }

            private void reopen() {
                openWatches.remove(call);
                if (!closed && !timer.isShutdown()) {
                    timer.schedule(() -> watch(what, open, listener), REOPEN_MILLIS, TimeUnit.MILLISECONDS);
                }
            }
        });
    }

    private static boolean unreachable(Status status) {
        return switch (status.getCode()) {
            case UNAVAILABLE, DEADLINE_EXCEEDED, CANCELLED, ABORTED, RESOURCE_EXHAUSTED, UNKNOWN, INTERNAL -> true;
            default -> false;
        };
    }

    /** The coordinator at {@code failed} did not answer: the next call goes to the next one. */
    private void moveOn(int failed) {
        current.compareAndSet(failed, (failed + 1) % channels.size());
    }

    private void refused(Status status, String coordinator) {
        String message = status.getCode() + ": " + status.getDescription();
        if (refusalsLogged.add(message)) {
            LOG.warning(name + ": coordinator " + coordinator + " refused a control call: " + message
                    + ((status.getCode() == Status.Code.UNAUTHENTICATED || status.getCode() == Status.Code.PERMISSION_DENIED)
                            && String.valueOf(status.getDescription()).contains("token")
                            ? " (check --control-token-file against the coordinators' --worker-token-file / --router-token-file)" : ""));
        }
    }

    @Override
    public void close() {
        closed = true;
        timer.shutdownNow();
        for (ClientCallStreamObserver<?> watch : openWatches) {
            watch.cancel("client closed", null);
        }
        channels.forEach(ManagedChannel::shutdownNow);
    }
}
