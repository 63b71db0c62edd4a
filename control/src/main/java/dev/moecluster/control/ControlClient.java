package dev.moecluster.control;

import static java.util.Objects.requireNonNull;

import com.hazelcast.client.HazelcastClient;
import com.hazelcast.client.config.ClientConfig;
import com.hazelcast.client.config.ClientConnectionStrategyConfig;
import com.hazelcast.core.HazelcastInstance;
import com.hazelcast.core.LifecycleEvent;
import com.hazelcast.map.IMap;
import com.hazelcast.map.listener.EntryAddedListener;
import com.hazelcast.map.listener.EntryUpdatedListener;
import dev.moecluster.core.placement.ExpertPlacement;
import java.util.Optional;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.function.Consumer;
import java.util.logging.Level;
import java.util.logging.Logger;

/**
 * A worker's or router's connection to the coordinators: a Hazelcast client (cheap, no data of its
 * own) that starts without waiting for the cluster and reconnects forever in the background, so a
 * component keeps serving on what it last knew while no coordinator answers. Offers the few
 * operations components need; every call made while disconnected is skipped and logged, never
 * thrown into the data path.
 */
public final class ControlClient implements AutoCloseable {
    private static final Logger LOG = Logger.getLogger(ControlClient.class.getName());

    private final ControlPlaneConfig config;
    private final HazelcastInstance hz;
    private final ScheduledExecutorService timer;
    private volatile boolean connected;

    private ControlClient(ControlPlaneConfig config, HazelcastInstance hz) {
        this.config = config;
        this.hz = hz;
        this.timer = Executors.newSingleThreadScheduledExecutor(
                r -> Thread.ofPlatform().name("moe-control-" + hz.getName()).daemon().unstarted(r));
    }

    /** Connects in the background; use {@link #onConnected} to act once the cluster answers. */
    public static ControlClient connect(ControlPlaneConfig config, String name) {
        requireNonNull(config, "config is null");
        ClientConfig cc = new ClientConfig();
        cc.setClusterName(config.clusterName());
        cc.setInstanceName(name + "-" + ProcessHandle.current().pid() + "-" + System.nanoTime());
        cc.setProperty("hazelcast.logging.type", "jdk");
        // components close their client themselves; Hazelcast's own hook would cut a worker's drain short
        cc.setProperty("hazelcast.shutdownhook.enabled", "false");
        cc.getNetworkConfig().getAddresses().addAll(config.coordinators());
        ClientConnectionStrategyConfig strategy = cc.getConnectionStrategyConfig();
        strategy.setAsyncStart(true).setReconnectMode(ClientConnectionStrategyConfig.ReconnectMode.ASYNC);
        strategy.getConnectionRetryConfig().setClusterConnectTimeoutMillis(Long.MAX_VALUE).setMaxBackoffMillis(2000);
        HazelcastInstance hz = HazelcastClient.newHazelcastClient(cc);
        ControlClient client = new ControlClient(config, hz);
        hz.getLifecycleService().addLifecycleListener(e -> {
            if (e.getState() == LifecycleEvent.LifecycleState.CLIENT_CONNECTED) {
                client.connected = true;
            } else if (e.getState() == LifecycleEvent.LifecycleState.CLIENT_DISCONNECTED) {
                client.connected = false;
            }
        });
        client.connected = hz.getLifecycleService().isRunning() && hz.getCluster() != null && isConnected(hz);
        return client;
    }

    private static boolean isConnected(HazelcastInstance hz) {
        try {
            return !hz.getCluster().getMembers().isEmpty();
        } catch (RuntimeException e) {
            return false;
        }
    }

    public ControlPlaneConfig config() {
        return config;
    }

    public boolean connected() {
        return connected;
    }

    /** Runs {@code action} now if connected and after every (re)connection. */
    public void onConnected(Runnable action) {
        hz.getLifecycleService().addLifecycleListener(e -> {
            if (e.getState() == LifecycleEvent.LifecycleState.CLIENT_CONNECTED) {
                timer.execute(() -> safely("on connect", action));
            }
        });
        if (connected) {
            timer.execute(() -> safely("on connect", action));
        }
    }

    /** Runs {@code action} every {@code periodMillis} on the client's timer thread, skipping failures. */
    public void every(long periodMillis, Runnable action) {
        timer.scheduleWithFixedDelay(() -> safely("periodic task", action), 0, periodMillis, TimeUnit.MILLISECONDS);
    }

    public IMap<String, String> map(String name) {
        return hz.getMap(name);
    }

    /** Puts a value; returns false (and logs) while the cluster is unreachable. */
    public boolean put(String map, String key, String value) {
        try {
            hz.<String, String>getMap(map).set(key, value);
            return true;
        } catch (RuntimeException e) {
            LOG.log(Level.FINE, "control plane unreachable, skipped update of " + map, e);
            return false;
        }
    }

    public Optional<String> get(String map, String key) {
        try {
            return Optional.ofNullable(hz.<String, String>getMap(map).get(key));
        } catch (RuntimeException e) {
            LOG.log(Level.FINE, "control plane unreachable, skipped read of " + map, e);
            return Optional.empty();
        }
    }

    /** The published placement, if the cluster answers and has one. */
    public Optional<ExpertPlacement> currentPlacement() {
        return get(ControlMaps.PLACEMENT, ControlMaps.CURRENT).map(ExpertPlacement::fromJson);
    }

    /**
     * Calls {@code listener} with every value put under {@code key} in {@code map}. Registration is
     * retried in the background until the cluster answers; the client re-registers after
     * reconnections by itself. Events are a fast path: components also poll, so a missed event only
     * delays a change by one heartbeat.
     */
    public void watch(String map, String key, Consumer<String> listener) {
        Runnable[] attempt = new Runnable[1];
        attempt[0] = () -> {
            try {
                hz.<String, String>getMap(map).addEntryListener(new KeyListener(listener), key, true);
            } catch (RuntimeException offline) {
                if (!timer.isShutdown()) {
                    timer.schedule(attempt[0], 500, TimeUnit.MILLISECONDS);
                }
            }
        };
        timer.execute(attempt[0]);
    }

    private record KeyListener(Consumer<String> listener)
            implements EntryAddedListener<String, String>, EntryUpdatedListener<String, String> {
        @Override
        public void entryAdded(com.hazelcast.core.EntryEvent<String, String> event) {
            listener.accept(event.getValue());
        }

        @Override
        public void entryUpdated(com.hazelcast.core.EntryEvent<String, String> event) {
            listener.accept(event.getValue());
        }
    }

    private static void safely(String what, Runnable action) {
        try {
            action.run();
        } catch (RuntimeException e) {
            LOG.log(Level.FINE, "control plane " + what + " failed (will retry)", e);
        }
    }

    @Override
    public void close() {
        timer.shutdownNow();
        try {
            hz.shutdown();
        } catch (RuntimeException e) {
            LOG.log(Level.FINE, "control client shutdown", e);
        }
    }
}
