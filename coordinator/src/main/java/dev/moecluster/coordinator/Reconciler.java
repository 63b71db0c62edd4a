package dev.moecluster.coordinator;

import com.hazelcast.cluster.Member;
import com.hazelcast.core.HazelcastInstance;
import com.hazelcast.map.IMap;
import dev.moecluster.control.Assignment;
import dev.moecluster.control.ControlMaps;
import dev.moecluster.control.HealthReport;
import dev.moecluster.control.LoadReport;
import dev.moecluster.control.PlacementGate;
import dev.moecluster.control.RecordSigning;
import dev.moecluster.control.RouterRecord;
import dev.moecluster.control.WorkerRecord;
import dev.moecluster.control.WorkerState;
import dev.moecluster.core.placement.ExpertPlacement;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Deque;
import java.util.EnumMap;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.LongAdder;
import java.util.Set;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.logging.Level;
import java.util.logging.Logger;

/**
 * The leader's control loop, run on every coordinator and acting only on the oldest member. Each
 * tick it declares workers with stale heartbeats dead, advances a rollout under way, or starts one
 * when the placement needs repair (dead or draining workers), was never made, is asked for, or has
 * drifted below the balancedness threshold. Rollouts are two-phase: load on the new workers and wait
 * for their acknowledgements, publish the new epoch, wait until routers switched plus a grace for
 * in-flight batches, then unload old copies. All state lives in Hazelcast maps, so a new leader
 * continues where the old one stopped.
 */
final class Reconciler {
    private static final Logger LOG = Logger.getLogger(Reconciler.class.getName());
    private static final long LOAD_WINDOW_MILLIS = 60_000;
    private static final long ROLLOUT_TIMEOUT_MILLIS = 120_000;
    private static final long ROUTER_SWITCH_TIMEOUT_MILLIS = 10_000;
    /**
     * How long every router that sends a worker batches must see them fail (none answered since) before
     * the worker is SUSPECT: longer than a GC pause, far shorter than the expert timeout.
     */
    static final long SUSPECT_AFTER_MILLIS = 4_000;
    /** Heartbeat timeouts a SUSPECT worker waits without failure reports before it is ACTIVE again. */
    static final int SUSPECT_PROBATION_TIMEOUTS = 10;
    /**
     * The shortest gap between two looks at the registry that counts as a pause ({@link RegistryWatch}),
     * whatever the heartbeat period: four of the loop's ticks, so a slow tick on a busy machine is none.
     */
    private static final long MIN_REGISTRY_PAUSE_MILLIS = 1_000;

    private final HazelcastInstance hz;
    private final CoordinatorConfig config;
    private final ModelShape shape;
    private final PlacementPlanner planner;
    private final long startedMillis = System.currentTimeMillis();
    private final Map<String, long[][]> lastReports = new HashMap<>();
    private final Deque<Map.Entry<Long, Map<Integer, long[]>>> window = new ArrayDeque<>();
    private long lastAutoCheck = System.currentTimeMillis();
    private volatile double balancedness = 1.0;
    private volatile ExpertLoad lastLoad = ExpertLoad.none();
    private final Map<String, LongAdder> rolloutsStarted = new ConcurrentHashMap<>();
    private final Map<String, LongAdder> expertLoads = new ConcurrentHashMap<>();
    private final Map<String, LongAdder> expertUnloads = new ConcurrentHashMap<>();
    private final Map<String, LongAdder> recordsRejected = new ConcurrentHashMap<>();
    /** Signs what the leader writes; null writes unsigned records. */
    private final RecordSigning signer;
    /** Epoch bounds and the model's shape; the leader checks signatures itself (by signing again). */
    private final PlacementGate gate;
    /** The placement record this member published or adopted while leading: what {@code current} must hold. */
    private String published;
    /** Whether this member, leading, has watched the registry long enough to declare workers dead. */
    private final RegistryWatch registryWatch;
    /** The leader's term this coordinator holds, -1 when it does not lead; claimed again on every tick. */
    private volatile long term = -1;
    /** When the term was last granted (System.nanoTime): a claim stuck on a partitioned owner renews nothing. */
    private volatile long termGrantedAt;
    /**
     * How long a granted term counts as leadership without being granted again. A leader cut off from
     * the others blocks in its next claim (the record's owner is out of reach) and keeps its term
     * field; after this lease it no longer says it leads. The other side can elect a leader only after
     * expelling it, a member timeout later ({@link CoordinatorServer#MEMBER_TIMEOUT_SECONDS}, twice the
     * lease), so two coordinators never both say they lead (the fault matrix's leader partition saw
     * two before the lease).
     */
    static final long LEADER_LEASE_NANOS = java.util.concurrent.TimeUnit.SECONDS.toNanos(CoordinatorServer.MEMBER_TIMEOUT_SECONDS) / 2;
    /** The highest term this member has read or held, so a lost term record never hands one out twice. */
    private long highestTermSeen;
    /** SUSPECT workers by address, and when they were last reported failing (or found SUSPECT). */
    private final Map<String, Long> suspectSince = new HashMap<>();
    /** Since when every router that sends the worker batches has seen them fail (workers failing now only). */
    private final Map<String, Long> failingSince = new HashMap<>();
    /** Experts the planner cannot place (min replicas unmet, memory short): logged when it starts or changes. */
    private final ConditionLog unplaceable = new ConditionLog(LOG, "cannot place experts");

    Reconciler(HazelcastInstance hz, CoordinatorConfig config, ModelShape shape) {
        this.hz = hz;
        this.config = config;
        this.shape = shape;
        this.planner = new PlacementPlanner(config.policy());
        this.signer = config.signingKey();
        this.gate = new PlacementGate(null, shape.moeLayers(), shape.numExperts());
        this.registryWatch = new RegistryWatch(config.heartbeatTimeout().toMillis(),
                Math.max(config.componentHeartbeat().toMillis(), MIN_REGISTRY_PAUSE_MILLIS));
    }

    /** The model's MoE layers, experts and bytes per expert, as the planner sees them. */
    ModelShape shape() {
        return shape;
    }

    /**
     * The oldest member leads, and only on a side of the cluster with a majority of the coordinators
     * (a minority cannot write: split-brain protection), and only while it holds the leader's term
     * ({@link LeaderTerm}), which the other members grant: a member they have expelled does not lead
     * on its own stale view of the cluster.
     */
    boolean isLeader() {
        return term > 0 && System.nanoTime() - termGrantedAt < LEADER_LEASE_NANOS && oldestOfMajority();
    }

    /** The term this coordinator leads with, or -1 when it does not lead. */
    long term() {
        return isLeader() ? term : -1;
    }

    private boolean oldestOfMajority() {
        Set<Member> members = hz.getCluster().getMembers();
        return members.size() >= config.majority() && members.iterator().next().localMember();
    }

    double balancedness() {
        return balancedness;
    }

    /** Workers registered now, by state (every state present, zero when none). */
    Map<WorkerState, Integer> workersByState() {
        Map<WorkerState, Integer> out = new EnumMap<>(WorkerState.class);
        for (WorkerState state : WorkerState.values()) {
            out.put(state, 0);
        }
        workers().values().forEach(w -> out.merge(w.state(), 1, Integer::sum));
        return out;
    }

    /** The current placement, or null before the first one (or when the record does not parse). */
    ExpertPlacement currentPlacement() {
        String json = map(ControlMaps.PLACEMENT).get(ControlMaps.CURRENT);
        try {
            return json == null ? null : ExpertPlacement.fromJson(json);
        } catch (RuntimeException e) {
            return null;
        }
    }

    /**
     * Records in the shared maps this member found it had not written while leading (forged, replayed,
     * malformed), by kind: {@code placement}, {@code rollout}.
     */
    long recordsRejected(String kind) {
        LongAdder n = recordsRejected.get(kind);
        return n == null ? 0 : n.sum();
    }

    /** Rollouts this member started while leading, by kind: {@code initial}, {@code repair}, {@code rebalance}. */
    long rolloutsStarted(String kind) {
        LongAdder n = rolloutsStarted.get(kind);
        return n == null ? 0 : n.sum();
    }

    /** Expert copies the rollouts of {@code kind} this member started load onto workers. */
    long expertLoads(String kind) {
        LongAdder n = expertLoads.get(kind);
        return n == null ? 0 : n.sum();
    }

    /**
     * Expert copies the rollouts of {@code kind} this member started unload from workers (old copies of
     * moved experts, surplus replicas); a rebalance that moves an expert counts one load and one unload.
     */
    long expertUnloads(String kind) {
        LongAdder n = expertUnloads.get(kind);
        return n == null ? 0 : n.sum();
    }

    /** Tokens per expert over the last minute, as of the last tick. */
    ExpertLoad load() {
        return lastLoad;
    }

    private IMap<String, String> map(String name) {
        return hz.getMap(name);
    }

    /** The term the other members grant this one, or -1 (refused, or no majority to write the record). */
    private long claimTerm() {
        try {
            long granted = LeaderTerm.claim(hz, config.majority(), highestTermSeen);
            highestTermSeen = Math.max(highestTermSeen, granted);
            if (granted > 0) {
                termGrantedAt = System.nanoTime();
            }
            return granted;
        } catch (RuntimeException refused) { // split-brain protection, or the owner is gone mid-call
            return -1;
        }
    }

    /** Every member keeps up with the term, so that should it lead one day it claims above it. */
    private void readTerm() {
        try {
            Map.Entry<Long, String> record = LeaderTerm.current(hz);
            if (record != null) {
                highestTermSeen = Math.max(highestTermSeen, record.getKey());
            }
        } catch (RuntimeException unreadable) {
            // the next tick reads it again
        }
    }

    void tick() {
        try {
            long now = System.currentTimeMillis();
            ExpertLoad load = aggregateLoad(now);
            lastLoad = load;
            ExpertPlacement shared = currentPlacement();
            if (shared != null) {
                // on every member, so each coordinator's metric and Status say what the leader sees
                balancedness = PlacementPlanner.balancedness(shared, load, capacities(workers()));
            }
            readTerm();
            long granted = oldestOfMajority() ? claimTerm() : -1;
            if (granted < 0) {
                if (term > 0) {
                    LOG.warning("this coordinator no longer leads (term " + term + "): it is not the oldest member of a"
                            + " majority, or the others no longer count it");
                }
                term = -1;
                registryWatch.stop();
                return;
            }
            if (granted != term) {
                term = granted;
                registryWatch.stop();
                LOG.info("this coordinator leads now with term " + term + " (" + hz.getCluster().getMembers().size()
                        + " members, majority " + config.majority() + "); it declares no worker dead for the first "
                        + config.heartbeatTimeout().toMillis() + " ms, while heartbeats that went to the old leader find their way here");
            }
            Map<String, WorkerRecord> workers = workers();
            long lookedAt = System.currentTimeMillis();
            long pause = registryWatch.look(lookedAt);
            if (pause > 0) {
                LOG.info("this coordinator could not read the worker registry for " + pause + " ms (a coordinator out of"
                        + " reach, partitions moving, or this process stalled); it declares no worker dead for the next "
                        + config.heartbeatTimeout().toMillis() + " ms, while heartbeats that could not be recorded find their way");
            }
            if (registryWatch.staleMeansDead(lookedAt)) {
                markDead(workers, lookedAt);
            }
            ExpertPlacement current = readCurrent();
            markSuspects(workers, current, now);
            Rollout rollout = readRollout();
            if (rollout != null) {
                advance(rollout, current, workers, now);
                return;
            }
            markDrained(workers, current);
            List<WorkerCapacity> capacities = capacities(workers);
            long active = capacities.stream().filter(c -> !c.draining()).count();
            if (current == null) {
                boolean waitedEnough = now - startedMillis > config.initialWait().toMillis();
                if (active >= config.expectedWorkers() || (waitedEnough && active >= config.policy().minReplicas())) {
                    start(renumbered(plan(capacities, load, null), firstEpoch()), null, "initial placement", "initial");
                }
                return;
            }
            String why = repairReason(current, workers);
            boolean asked = map(ControlMaps.REQUESTS).remove(ControlMaps.REBALANCE) != null;
            boolean scheduled = now - lastAutoCheck > config.rebalanceInterval().toMillis();
            if (scheduled) {
                lastAutoCheck = now;
            }
            // a worker that joined (scale-up, a restarted pod) holds nothing until a rebalance gives it
            // experts; the placement's balancedness cannot see it, so the scheduled check looks for it
            boolean idle = scheduled && hasIdleWorker(current, capacities);
            if (why != null || asked || (scheduled && balancedness < config.rebalanceBelow()) || idle) {
                PlacementPlan plan = plan(capacities, load, current);
                if (plan.changed()) {
                    String reason = why != null ? why : asked ? "rebalance requested"
                            : balancedness < config.rebalanceBelow() ? "balancedness " + String.format("%.2f", balancedness)
                            : "a worker without experts joined";
                    start(plan, current, reason, why != null ? "repair" : "rebalance");
                } else if (asked) {
                    LOG.info("rebalance requested: current placement kept (" + plan.decision() + ", balancedness "
                            + String.format("%.3f", plan.balancednessAfter()) + ")");
                }
            }
        } catch (InfeasiblePlacementException e) {
            unplaceable.holds(e.getMessage());
        } catch (RuntimeException e) {
            LOG.log(Level.WARNING, "reconcile failed (will retry)", e);
        }
    }

    /** The planner's placement for these workers ({@code current} null: a first one), ending an unplaceable condition. */
    private PlacementPlan plan(List<WorkerCapacity> capacities, ExpertLoad load, ExpertPlacement current) {
        PlacementPlan plan = current == null ? planner.plan(shape, capacities, load) : planner.plan(shape, capacities, load, current);
        unplaceable.ended("the experts fit on " + capacities.stream().filter(c -> !c.draining()).count() + " active worker(s)");
        return plan;
    }

    /**
     * The published placement, checked: a record this member did not write (a rogue Hazelcast client's,
     * a replayed old one, a malformed one) is counted, logged and replaced by the one it published; a new
     * leader adopts a record that passes the checks (epoch bounds, shape, the signature when it signs).
     */
    private ExpertPlacement readCurrent() {
        String json = map(ControlMaps.PLACEMENT).get(ControlMaps.CURRENT);
        if (json != null && json.equals(published)) {
            return ExpertPlacement.fromJson(json);
        }
        if (json == null && published == null) {
            return null;
        }
        String problem = json == null ? "it was removed" : placementProblem(json);
        if (problem == null) {
            published = json; // e.g. a new leader taking over its predecessor's placement
            return ExpertPlacement.fromJson(json);
        }
        recordsRejected.computeIfAbsent(RecordSigning.PLACEMENT, k -> new LongAdder()).increment();
        if (published == null) {
            LOG.warning("the placement record in the shared map is not one the leader wrote (" + problem
                    + "); planning afresh above every router's epoch");
            return null;
        }
        LOG.warning("the placement record in the shared map is not the one this leader published (" + problem
                + "); restored epoch " + ExpertPlacement.fromJson(published).epoch());
        map(ControlMaps.PLACEMENT).set(ControlMaps.CURRENT, published);
        return ExpertPlacement.fromJson(published);
    }

    /** Why {@code json} cannot be the leader's placement record, or null when it can. */
    private String placementProblem(String json) {
        ExpertPlacement p;
        try {
            p = ExpertPlacement.fromJson(json);
        } catch (RuntimeException e) {
            return "it does not parse";
        }
        if (p.epoch() < 1 || p.epoch() > PlacementGate.MAX_EPOCH) {
            return "epoch " + p.epoch() + " is outside 1.." + PlacementGate.MAX_EPOCH;
        }
        String shapeProblem = gate.shapeProblem(p);
        if (shapeProblem != null) {
            return shapeProblem;
        }
        if (published != null && p.epoch() < ExpertPlacement.fromJson(published).epoch()) {
            return "epoch " + p.epoch() + " is older than the published one";
        }
        if (signer != null && !signer.verifies(RecordSigning.PLACEMENT, ControlMaps.CURRENT, p.toJson(),
                RecordSigning.signatureIn(json))) {
            return "epoch " + p.epoch() + " does not carry the leader's signature";
        }
        return null;
    }

    /** The rollout under way, or null; one the leader did not sign (when it signs) is dropped. */
    private Rollout readRollout() {
        String json = map(ControlMaps.PLACEMENT).get(ControlMaps.PENDING);
        if (json == null) {
            return null;
        }
        Rollout r;
        try {
            r = Rollout.fromJson(json);
            ExpertPlacement next = ExpertPlacement.fromJson(r.placementJson());
            if (next.epoch() < 1 || next.epoch() > PlacementGate.MAX_EPOCH || gate.shapeProblem(next) != null) {
                throw new IllegalArgumentException("epoch or shape out of bounds");
            }
        } catch (RuntimeException e) {
            r = null;
        }
        if (r == null || (signer != null && !signer.verifies(RecordSigning.ROLLOUT, ControlMaps.PENDING, r.toJson(),
                RecordSigning.signatureIn(json)))) {
            recordsRejected.computeIfAbsent(RecordSigning.ROLLOUT, k -> new LongAdder()).increment();
            LOG.warning("dropped a rollout record the leader did not write (malformed, out of bounds or unsigned)");
            map(ControlMaps.PLACEMENT).remove(ControlMaps.PENDING, json);
            return null;
        }
        return r;
    }

    /**
     * The epoch of a placement planned without a current one: above every epoch routers report (a new
     * leader that found the record forged must publish something routers take as newer).
     */
    private long firstEpoch() {
        long highest = 0;
        for (String json : map(ControlMaps.ROUTERS).values()) {
            try {
                long epoch = RouterRecord.fromJson(json).epoch();
                if (epoch <= PlacementGate.MAX_EPOCH) { // a forged report cannot push the leader past the bound
                    highest = Math.max(highest, epoch);
                }
            } catch (RuntimeException malformed) {
                // a record the leader cannot read says nothing about routers
            }
        }
        return Math.min(PlacementGate.MAX_EPOCH, Math.addExact(highest, 1));
    }

    private static PlacementPlan renumbered(PlacementPlan plan, long epoch) {
        ExpertPlacement p = plan.placement();
        return new PlacementPlan(new ExpertPlacement(epoch, p.workers(), p.layers()), plan.decision(), plan.loads(),
                plan.unloads(), plan.balancednessBefore(), plan.balancednessAfter());
    }

    /** {@code canonical} with the leader's signature under {@code key}, or as is when it does not sign. */
    private String sign(String kind, String key, String canonical) {
        return signer == null ? canonical : signer.signed(kind, key, canonical);
    }

    private void writeRollout(Rollout r) {
        map(ControlMaps.PLACEMENT).set(ControlMaps.PENDING, sign(RecordSigning.ROLLOUT, ControlMaps.PENDING, r.toJson()));
    }

    private void writeAssignment(String address, Assignment a) {
        map(ControlMaps.ASSIGNMENTS).set(address, sign(RecordSigning.ASSIGNMENT, address, a.toJson()));
    }

    /** An active (not draining) worker that the current placement gives no expert. */
    private static boolean hasIdleWorker(ExpertPlacement current, List<WorkerCapacity> capacities) {
        for (WorkerCapacity c : capacities) {
            int index = current.workers().indexOf(c.id());
            if (!c.draining() && (index < 0 || current.heldBy(index).isEmpty())) {
                return true;
            }
        }
        return false;
    }

    /** Workers by address. */
    Map<String, WorkerRecord> workers() {
        Map<String, WorkerRecord> out = new TreeMap<>();
        map(ControlMaps.WORKERS).forEach((k, v) -> out.put(k, WorkerRecord.fromJson(v)));
        return out;
    }

    private void markDead(Map<String, WorkerRecord> workers, long now) {
        for (Map.Entry<String, WorkerRecord> e : workers.entrySet()) {
            WorkerRecord w = e.getValue();
            boolean live = w.state() == WorkerState.ACTIVE || w.state() == WorkerState.DRAINING;
            if (live && now - w.heartbeatMillis() > config.heartbeatTimeout().toMillis()) {
                LOG.warning("worker " + w.id() + " (" + e.getKey() + ") missed its heartbeats for "
                        + (now - w.heartbeatMillis()) + " ms: declared dead");
                setState(e, WorkerState.DEAD);
            }
        }
    }

    /**
     * Gray failures: an ACTIVE worker that stopped answering every router that sends it batches (each
     * router's last batch to it failed, and so for {@value #SUSPECT_AFTER_MILLIS} ms in a row) becomes
     * SUSPECT, so its experts move as a dead worker's do although its heartbeats go on. A SUSPECT worker
     * no router reports failing comes back to ACTIVE after a probation of
     * {@value #SUSPECT_PROBATION_TIMEOUTS} heartbeat timeouts.
     */
    private void markSuspects(Map<String, WorkerRecord> workers, ExpertPlacement current, long now) {
        // per worker: failures in a row summed over routers, and how many routers do not see it failing now
        Map<String, long[]> reported = new HashMap<>();
        for (String json : map(ControlMaps.HEALTH).values()) {
            try {
                HealthReport r = HealthReport.fromJson(json);
                if (now - r.millis() <= config.heartbeatTimeout().toMillis()) {
                    r.workers().forEach((address, c) -> {
                        long[] sum = reported.computeIfAbsent(address, k -> new long[2]);
                        sum[0] += c.failingStreak();
                        sum[1] += c.failingStreak() == 0 ? 1 : 0;
                    });
                }
            } catch (RuntimeException unreadable) {
                // written by the Control API after its checks; a record that still cannot be read says nothing
            }
        }
        long probation = SUSPECT_PROBATION_TIMEOUTS * config.heartbeatTimeout().toMillis();
        for (Map.Entry<String, WorkerRecord> e : workers.entrySet()) {
            WorkerRecord w = e.getValue();
            long[] counts = reported.getOrDefault(e.getKey(), new long[2]);
            // a worker the placement gives nothing gets no batches: failures reported of it are its past's
            boolean failing = counts[0] > 0 && counts[1] == 0 && current != null && current.workers().contains(e.getKey())
                    && !current.heldBy(current.indexOf(e.getKey())).isEmpty();
            if (failing) {
                failingSince.putIfAbsent(e.getKey(), now);
            } else {
                failingSince.remove(e.getKey());
            }
            if (w.state() == WorkerState.ACTIVE && failing && now - failingSince.get(e.getKey()) >= SUSPECT_AFTER_MILLIS) {
                LOG.warning("worker " + w.id() + " (" + e.getKey() + ") answers heartbeats but routers report its last " + counts[0]
                        + " batches failed and none answered for " + (now - failingSince.get(e.getKey()))
                        + " ms: SUSPECT, its experts move elsewhere");
                setState(e, WorkerState.SUSPECT);
                suspectSince.put(e.getKey(), now);
            } else if (w.state() == WorkerState.SUSPECT) {
                long since = suspectSince.computeIfAbsent(e.getKey(), k -> now); // a new leader starts the probation over
                if (counts[0] > 0) {
                    suspectSince.put(e.getKey(), now);
                } else if (now - since > probation) {
                    LOG.info("worker " + w.id() + " (" + e.getKey() + ") has had no failure reports for " + probation
                            + " ms: ACTIVE again, a rebalance may give it experts");
                    setState(e, WorkerState.ACTIVE);
                    suspectSince.remove(e.getKey());
                }
            } else {
                suspectSince.remove(e.getKey());
            }
        }
    }

    private void setState(Map.Entry<String, WorkerRecord> entry, WorkerState state) {
        WorkerRecord changed = entry.getValue().withState(state);
        map(ControlMaps.WORKERS).set(entry.getKey(), changed.toJson());
        entry.setValue(changed);
    }

    private void markDrained(Map<String, WorkerRecord> workers, ExpertPlacement current) {
        for (Map.Entry<String, WorkerRecord> e : workers.entrySet()) {
            WorkerRecord w = e.getValue();
            boolean placed = current != null && current.workers().contains(e.getKey())
                    && !current.heldBy(current.indexOf(e.getKey())).isEmpty();
            if (w.state() == WorkerState.DRAINING && !placed && w.expertCount() == 0) {
                LOG.info("worker " + w.id() + " (" + e.getKey() + ") is drained and can stop");
                map(ControlMaps.WORKERS).set(e.getKey(), w.withState(WorkerState.DRAINED).toJson());
            }
        }
    }

    /** Live workers in a stable order (by address), which keeps the planner deterministic. */
    static List<WorkerCapacity> capacities(Map<String, WorkerRecord> workers) {
        List<WorkerCapacity> out = new ArrayList<>();
        workers.forEach((address, w) -> {
            if (w.state() == WorkerState.ACTIVE || w.state() == WorkerState.DRAINING) {
                out.add(new WorkerCapacity(address, w.memoryBytes(), w.state() == WorkerState.DRAINING,
                        w.planningRowsPerSecond()));
            }
        });
        return SpeedClasses.apply(out);
    }

    private static String repairReason(ExpertPlacement current, Map<String, WorkerRecord> workers) {
        for (int i = 0; i < current.workers().size(); i++) {
            String address = current.workers().get(i);
            if (current.heldBy(i).isEmpty()) {
                continue;
            }
            WorkerRecord w = workers.get(address);
            if (w == null || w.state() == WorkerState.DEAD) {
                return "worker " + address + " is gone";
            }
            if (w.state() == WorkerState.SUSPECT) {
                return "worker " + address + " is suspect (its data plane fails while it heartbeats)";
            }
            if (w.state() == WorkerState.DRAINING) {
                return "worker " + address + " is draining";
            }
        }
        return null;
    }

    private void start(PlacementPlan plan, ExpertPlacement current, String reason, String kind) {
        ExpertPlacement next = plan.placement();
        rolloutsStarted.computeIfAbsent(kind, k -> new LongAdder()).increment();
        expertLoads.computeIfAbsent(kind, k -> new LongAdder()).add(plan.loads().size());
        expertUnloads.computeIfAbsent(kind, k -> new LongAdder()).add(plan.unloads().size());
        LOG.info("rollout to epoch " + next.epoch() + " (" + reason + "): " + plan.decision() + ", " + plan.loads().size()
                + " loads, " + plan.unloads().size() + " unloads, balancedness " + String.format("%.3f -> %.3f",
                        plan.balancednessBefore(), plan.balancednessAfter()));
        Rollout r = new Rollout(next.toJson(), Rollout.LOADING, System.currentTimeMillis(), 0, reason);
        writeRollout(r);
        assign(union(current, next), loadingEpoch(next));
    }

    private static long loadingEpoch(ExpertPlacement p) {
        return Math.subtractExact(Math.multiplyExact(p.epoch(), 2), 1);
    }

    private static long finalEpoch(ExpertPlacement p) {
        return Math.multiplyExact(p.epoch(), 2);
    }

    private void advance(Rollout r, ExpertPlacement current, Map<String, WorkerRecord> workers, long now) {
        ExpertPlacement next = ExpertPlacement.fromJson(r.placementJson());
        if (r.phase().equals(Rollout.LOADING)) {
            boolean ready = true;
            for (int i = 0; i < next.workers().size(); i++) {
                Map<Integer, Set<Integer>> want = next.heldBy(i);
                if (want.isEmpty()) {
                    continue;
                }
                WorkerRecord w = workers.get(next.workers().get(i));
                if (w == null || w.state() == WorkerState.DEAD || w.state() == WorkerState.SUSPECT) {
                    LOG.warning("rollout to epoch " + next.epoch() + " abandoned: worker " + next.workers().get(i) + " is "
                            + (w == null ? "gone" : w.state().name()));
                    map(ControlMaps.PLACEMENT).remove(ControlMaps.PENDING);
                    return;
                }
                if (w.heldEpoch() < loadingEpoch(next) || !contains(w.held(), want)) {
                    ready = false;
                }
            }
            if (!ready) {
                if (now - r.sinceMillis() > ROLLOUT_TIMEOUT_MILLIS) {
                    LOG.warning("rollout to epoch " + next.epoch() + " timed out waiting for workers to load; replanning");
                    map(ControlMaps.PLACEMENT).remove(ControlMaps.PENDING);
                }
                return;
            }
            String record = sign(RecordSigning.PLACEMENT, ControlMaps.CURRENT, next.toJson());
            map(ControlMaps.PLACEMENT).set(ControlMaps.CURRENT, record);
            published = record;
            writeRollout(r.withPhase(Rollout.PUBLISHED, now));
            LOG.info("published placement epoch " + next.epoch());
            return;
        }
        // PUBLISHED: wait for routers to switch, then the grace, then unload old copies.
        if (r.routersSwitchedMillis() == 0) {
            boolean switched = true;
            for (String json : map(ControlMaps.ROUTERS).values()) {
                RouterRecord router = RouterRecord.fromJson(json);
                boolean live = now - router.heartbeatMillis() < config.heartbeatTimeout().toMillis();
                if (live && router.epoch() < next.epoch()) {
                    switched = false;
                }
            }
            if (switched || now - r.sinceMillis() > ROUTER_SWITCH_TIMEOUT_MILLIS) {
                writeRollout(r.withRoutersSwitched(now));
            }
            return;
        }
        if (now - r.routersSwitchedMillis() < config.drainGrace().toMillis()) {
            return;
        }
        assign(union(null, next), finalEpoch(next));
        // workers that fell out of the placement hold nothing now
        for (String address : workers.keySet()) {
            if (!next.workers().contains(address) && workers.get(address).state() != WorkerState.DEAD) {
                writeAssignment(address, new Assignment(finalEpoch(next), Map.of()));
            }
        }
        map(ControlMaps.PLACEMENT).remove(ControlMaps.PENDING);
        LOG.info("rollout to epoch " + next.epoch() + " complete (" + r.reason() + ")");
    }

    private static boolean contains(Map<Integer, Set<Integer>> held, Map<Integer, Set<Integer>> want) {
        for (Map.Entry<Integer, Set<Integer>> e : want.entrySet()) {
            if (!held.getOrDefault(e.getKey(), Set.of()).containsAll(e.getValue())) {
                return false;
            }
        }
        return true;
    }

    /** Per worker address: what it holds in {@code a} (may be null) and {@code b} together. */
    private static Map<String, Map<Integer, Set<Integer>>> union(ExpertPlacement a, ExpertPlacement b) {
        Map<String, Map<Integer, Set<Integer>>> out = new TreeMap<>();
        for (ExpertPlacement p : new ExpertPlacement[] {a, b}) {
            if (p == null) {
                continue;
            }
            for (int i = 0; i < p.workers().size(); i++) {
                Map<Integer, Set<Integer>> into = out.computeIfAbsent(p.workers().get(i), k -> new TreeMap<>());
                p.heldBy(i).forEach((l, es) -> into.computeIfAbsent(l, k -> new TreeSet<>()).addAll(es));
            }
        }
        return out;
    }

    private void assign(Map<String, Map<Integer, Set<Integer>>> byWorker, long epoch) {
        byWorker.forEach((address, experts) -> writeAssignment(address, new Assignment(epoch, experts)));
    }

    /** Sums the routers' per-expert token counts over the last minute from their cumulative reports. */
    ExpertLoad aggregateLoad(long now) {
        Map<Integer, long[]> delta = new TreeMap<>();
        map(ControlMaps.LOAD).forEach((router, json) -> {
            LoadReport report = LoadReport.fromJson(json);
            long[][] prev = lastReports.get(router);
            long[][] cur = new long[shape.moeLayers().size()][];
            for (int li = 0; li < shape.moeLayers().size(); li++) {
                int layer = shape.moeLayers().get(li);
                long[] counts = report.tokensByLayer().getOrDefault(layer, new long[shape.numExperts()]);
                cur[li] = counts;
                long[] d = delta.computeIfAbsent(layer, k -> new long[shape.numExperts()]);
                for (int e = 0; e < Math.min(counts.length, d.length); e++) {
                    long before = prev == null || prev[li] == null || prev[li].length <= e ? 0 : prev[li][e];
                    d[e] += Math.max(0, counts[e] - before);
                }
            }
            lastReports.put(router, cur);
        });
        window.addLast(Map.entry(now, delta));
        while (!window.isEmpty() && now - window.peekFirst().getKey() > LOAD_WINDOW_MILLIS) {
            window.removeFirst();
        }
        Map<Integer, long[]> total = new TreeMap<>();
        for (var entry : window) {
            entry.getValue().forEach((layer, counts) -> {
                long[] t = total.computeIfAbsent(layer, k -> new long[shape.numExperts()]);
                for (int e = 0; e < counts.length; e++) {
                    t[e] += counts[e];
                }
            });
        }
        return new ExpertLoad(total);
    }
}
