package dev.moecluster.bench.fault;

import java.io.IOException;
import java.util.List;
import java.util.Locale;

/**
 * The faults the harness injects into one host of a {@link FaultCluster}, each with its repair. The
 * worker faults hit a worker that holds experts; the coordinator faults hit whichever coordinator
 * leads when the fault starts.
 */
public enum Fault {
    WORKER_SIGKILL("SIGKILL one worker; restarted after the fault"),
    WORKER_SIGSTOP("SIGSTOP one worker (heartbeats and data plane freeze); SIGCONT after the fault"),
    DATA_PLANE_BLACKHOLE("drop every packet of one worker's data-plane port; its heartbeats go on"),
    SLOW_REPLICA("+200 ms round trip on one worker's data plane (every expert has a fast copy)"),
    PACKET_LOSS("drop 10 % of one worker's packets, both ways, data and control"),
    LEADER_SIGKILL("SIGKILL the leading coordinator; restarted after the fault"),
    LEADER_PARTITION("cut the leading coordinator off from the other coordinators (workers and router still reach it)");

    /** What was done and how to undo it. */
    public record Injected(Fault fault, String node, String worker, Repair repair) {}

    /** Undoes a fault. */
    @FunctionalInterface
    public interface Repair {
        void run() throws IOException;
    }

    private final String description;

    Fault(String description) {
        this.description = description;
    }

    public String description() {
        return description;
    }

    /** The name on the command line: {@code worker-sigkill}, {@code leader-partition}, ... */
    public String label() {
        return name().toLowerCase(Locale.ROOT).replace('_', '-');
    }

    public static Fault byLabel(String label) {
        for (Fault f : values()) {
            if (f.label().equals(label)) {
                return f;
            }
        }
        throw new IllegalArgumentException("no fault " + label + "; known: "
                + String.join(", ", java.util.Arrays.stream(values()).map(Fault::label).toList()));
    }

    public boolean hitsWorker() {
        return this != LEADER_SIGKILL && this != LEADER_PARTITION;
    }

    /** Injects the fault into {@code c}; {@link Injected#repair} undoes it. */
    public Injected inject(FaultCluster c) throws IOException, InterruptedException {
        // Different workers for different faults, so one fault's aftermath (a worker that rejoined and
        // holds few experts) does not decide whether the next one is felt.
        String w = c.workers().get(ordinal() % c.workers().size());
        String address = c.workerAddress(w);
        int port = c.workerPort(w);
        return switch (this) {
            case WORKER_SIGKILL -> {
                c.kill(w);
                yield new Injected(this, w, address, () -> c.restart(w));
            }
            case WORKER_SIGSTOP -> {
                c.signal(w, true);
                yield new Injected(this, w, address, () -> c.signal(w, false));
            }
            case DATA_PLANE_BLACKHOLE -> {
                c.net().firewall(w, List.of("tcp dport " + port + " drop"), List.of("tcp sport " + port + " drop"));
                yield new Injected(this, w, address, () -> c.net().heal(w));
            }
            case SLOW_REPLICA -> {
                c.proxy(w).setDelay(100);
                yield new Injected(this, w, address, () -> c.proxy(w).setDelay(0));
            }
            case PACKET_LOSS -> {
                String rule = "numgen random mod 100 < 10 drop";
                c.net().firewall(w, List.of(rule), List.of(rule));
                yield new Injected(this, w, address, () -> c.net().heal(w));
            }
            case LEADER_SIGKILL -> {
                String leader = requireLeader(c);
                c.kill(leader);
                yield new Injected(this, leader, null, () -> c.restart(leader));
            }
            case LEADER_PARTITION -> {
                String leader = requireLeader(c);
                String others = String.join(", ", c.coordinators().stream().filter(n -> !n.equals(leader))
                        .map(n -> c.net().address(n)).toList());
                c.net().firewall(leader, List.of("ip saddr { " + others + " } drop"), List.of("ip daddr { " + others + " } drop"));
                yield new Injected(this, leader, null, () -> c.net().heal(leader));
            }
        };
    }

    private static String requireLeader(FaultCluster c) {
        String leader = c.leader();
        if (leader == null) {
            throw new IllegalStateException("no coordinator leads");
        }
        return leader;
    }
}
