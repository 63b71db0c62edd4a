package dev.moecluster.bench.fault;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.TimeUnit;

/**
 * Hosts for the fault harness on one machine: each node gets its own network namespace (its own
 * stack, ports and nftables firewall) with one veth on a bridge in the root namespace, so a fault
 * injected into a node's firewall hits that node alone, as a fault of one host would.
 */
public final class Netns implements AutoCloseable {
    private final String tag;
    private final String subnet;
    private final String bridge;
    private final Map<String, String> addresses = new LinkedHashMap<>();

    private Netns(String tag, String subnet) {
        this.tag = tag;
        this.subnet = subnet;
        this.bridge = "mfb" + tag;
    }

    /**
     * Why this machine cannot run the harness (not root, no {@code ip} or {@code nft}, namespaces
     * refused), or empty when it can: tried, not guessed.
     */
    public static Optional<String> unavailable() {
        String probe = "moe-fault-probe-" + ProcessHandle.current().pid();
        try {
            if (!"0".equals(output(List.of("id", "-u")).strip())) {
                return Optional.of("the fault harness needs root (network namespaces and nftables)");
            }
            run(List.of("ip", "netns", "add", probe));
            try {
                run(List.of("ip", "netns", "exec", probe, "nft", "add", "table", "inet", "probe"));
            } finally {
                run(List.of("ip", "netns", "del", probe));
            }
            return Optional.empty();
        } catch (IOException | RuntimeException e) {
            return Optional.of("network namespaces or nftables are not usable here (" + e.getMessage()
                    + "); install iproute2 and nftables and run as root");
        }
    }

    /**
     * A bridge in the root namespace on a random 10.77.N.0/24 (so concurrent harnesses do not meet),
     * with the root namespace at {@link #hostAddress()}.
     */
    public static Netns create() throws IOException {
        String tag = Integer.toHexString(ThreadLocalRandom.current().nextInt(0x1000, 0x10000));
        Netns n = new Netns(tag, "10.77." + ThreadLocalRandom.current().nextInt(1, 255));
        run(List.of("ip", "link", "add", n.bridge, "type", "bridge"));
        run(List.of("ip", "addr", "add", n.hostAddress() + "/24", "dev", n.bridge));
        run(List.of("ip", "link", "set", n.bridge, "up"));
        return n;
    }

    /** The root namespace's address on the bridge: the harness itself and its proxies listen here. */
    public String hostAddress() {
        return subnet + ".1";
    }

    /** Adds a node (a namespace with lo and eth0 up) and returns its address. */
    public String add(String node) throws IOException {
        int index = addresses.size() + 1;
        String address = subnet + "." + (10 + index);
        String ns = namespace(node);
        String veth = "mf" + tag + "v" + index;
        run(List.of("ip", "netns", "add", ns));
        addresses.put(node, address);
        run(List.of("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns));
        run(List.of("ip", "link", "set", veth, "master", bridge, "up"));
        run(exec(node, List.of("ip", "addr", "add", address + "/24", "dev", "eth0")));
        run(exec(node, List.of("ip", "link", "set", "eth0", "up")));
        run(exec(node, List.of("ip", "link", "set", "lo", "up")));
        return address;
    }

    public String address(String node) {
        String a = addresses.get(node);
        if (a == null) {
            throw new IllegalArgumentException("no node " + node);
        }
        return a;
    }

    /** {@code cmd} run inside the node's namespace. */
    public List<String> exec(String node, List<String> cmd) {
        List<String> out = new ArrayList<>(List.of("ip", "netns", "exec", namespace(node)));
        out.addAll(cmd);
        return out;
    }

    /**
     * Replaces the node's fault rules with {@code inputRules} and {@code outputRules} (nftables rule
     * lines, e.g. {@code tcp dport 51000 drop}); both filter every packet the node receives or sends.
     */
    public void firewall(String node, List<String> inputRules, List<String> outputRules) throws IOException {
        heal(node);
        String table = "table inet fault {\n"
                + "  chain in { type filter hook input priority 0; policy accept;\n    " + String.join("\n    ", inputRules) + "\n  }\n"
                + "  chain out { type filter hook output priority 0; policy accept;\n    " + String.join("\n    ", outputRules) + "\n  }\n"
                + "}\n";
        run(exec(node, List.of("nft", "-f", "-")), table);
    }

    /** Removes the node's fault rules (none is fine). */
    public void heal(String node) throws IOException {
        try {
            run(exec(node, List.of("nft", "delete", "table", "inet", "fault")));
        } catch (IOException noTable) {
            // nothing to remove
        }
    }

    private String namespace(String node) {
        return "moef-" + tag + "-" + node;
    }

    @Override
    public void close() {
        for (String node : addresses.keySet()) {
            quietly(List.of("ip", "netns", "del", namespace(node)));
        }
        quietly(List.of("ip", "link", "del", bridge));
    }

    private static void quietly(List<String> cmd) {
        try {
            run(cmd);
        } catch (IOException ignored) {
            // best effort on the way out
        }
    }

    static void run(List<String> cmd) throws IOException {
        run(cmd, null);
    }

    private static void run(List<String> cmd, String stdin) throws IOException {
        Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
        if (stdin != null) {
            p.getOutputStream().write(stdin.getBytes(StandardCharsets.UTF_8));
        }
        p.getOutputStream().close();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        try {
            if (!p.waitFor(30, TimeUnit.SECONDS)) {
                p.destroyForcibly();
                throw new IOException(String.join(" ", cmd) + ": no answer in 30 s");
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IOException("interrupted", e);
        }
        if (p.exitValue() != 0) {
            throw new IOException(String.join(" ", cmd) + " failed (" + p.exitValue() + "): " + out.strip());
        }
    }

    private static String output(List<String> cmd) throws IOException {
        Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
        return new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    }
}
