package dev.moecluster.coordinator;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import com.hazelcast.client.HazelcastClient;
import com.hazelcast.client.config.ClientConfig;
import com.hazelcast.config.JoinConfig;
import com.hazelcast.config.ServerSocketEndpointConfig;
import com.hazelcast.instance.EndpointQualifier;
import com.hazelcast.core.Hazelcast;
import com.hazelcast.core.HazelcastInstance;
import java.io.IOException;
import java.net.ConnectException;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.UUID;
import org.junit.jupiter.api.Test;

/**
 * How a coordinator's Hazelcast member finds the others (a TCP-IP member list, or Kubernetes DNS), where
 * it listens, and that it admits members only: no Hazelcast client connects.
 */
class CoordinatorHazelcastConfigTest {
    private static final String SERVICE = "moe-coordinator-headless.moe.svc.cluster.local";

    private static CoordinatorConfig config(List<String> members, String serviceDns) {
        return new CoordinatorConfig("test", "10.1.2.3", 5701, 50071, members, serviceDns, Path.of("model"),
                PlacementPolicy.defaults(), 1, Duration.ofSeconds(1), Duration.ofSeconds(5),
                Duration.ofSeconds(1), Duration.ofSeconds(60), 0.8, -1);
    }

    @Test
    void joinsTheMemberListOverTcpIpWithoutAServiceName() {
        JoinConfig join = CoordinatorServer.hazelcastConfig(config(List.of("10.1.2.3:5701", "10.1.2.4:5701"), null))
                .getAdvancedNetworkConfig().getJoin();

        assertThat(join.getTcpIpConfig().isEnabled()).isTrue();
        assertThat(join.getTcpIpConfig().getMembers()).containsExactly("10.1.2.3:5701", "10.1.2.4:5701");
        assertThat(join.getKubernetesConfig().isEnabled()).isFalse();
        assertThat(join.getMulticastConfig().isEnabled()).isFalse();
        assertThat(join.getAutoDetectionConfig().isEnabled()).isFalse();
    }

    @Test
    void joinsThroughKubernetesDnsLookupWhenAServiceIsNamed() {
        var hz = CoordinatorServer.hazelcastConfig(config(List.of("10.1.2.3:5701"), SERVICE));
        JoinConfig join = hz.getAdvancedNetworkConfig().getJoin();

        assertThat(join.getKubernetesConfig().isEnabled()).isTrue();
        assertThat(join.getKubernetesConfig().getProperties())
                .containsEntry("service-dns", SERVICE)
                .containsEntry("service-port", "5701")
                .doesNotContainKeys("service-name", "namespace");
        assertThat(join.getTcpIpConfig().isEnabled()).isFalse();
        assertThat(join.getMulticastConfig().isEnabled()).isFalse();
        assertThat(join.getAutoDetectionConfig().isEnabled()).isFalse();
        join.verify(); // Hazelcast's own check: exactly one join mechanism is on
        assertThat(hz.getAdvancedNetworkConfig().getEndpointConfigs()).containsOnlyKeys(EndpointQualifier.MEMBER);
        // members advertise the address they bind (the pod IP in Kubernetes), which clients then dial
        assertThat(((ServerSocketEndpointConfig) hz.getAdvancedNetworkConfig().getEndpointConfigs().get(EndpointQualifier.MEMBER))
                .getPublicAddress())
                .isEqualTo("10.1.2.3:5701");
        assertThat(hz.getClusterName()).isEqualTo("test");
    }

    @Test
    void aMemberStartsWithDnsDiscoveryAndNoKubernetesApi() throws IOException {
        int port;
        try (ServerSocket socket = new ServerSocket(0)) {
            port = socket.getLocalPort();
        }
        // "localhost" stands in for the headless Service: Hazelcast resolves it like any name, to this member
        var config = new CoordinatorConfig("dns-" + UUID.randomUUID(), "127.0.0.1", port, 0, List.of("127.0.0.1:" + port),
                "localhost", Path.of("model"), PlacementPolicy.defaults(), 1, Duration.ofSeconds(1), Duration.ofSeconds(5),
                Duration.ofSeconds(1), Duration.ofSeconds(60), 0.8, -1);
        HazelcastInstance member = Hazelcast.newHazelcastInstance(CoordinatorServer.hazelcastConfig(config));
        try {
            assertThat(member.getCluster().getMembers()).singleElement()
                    .satisfies(m -> assertThat(m.getAddress().getPort()).isEqualTo(port));
        } finally {
            member.shutdown();
        }
    }

    @Test
    void theMemberListensOnlyOnItsHost() throws IOException {
        int port;
        try (ServerSocket socket = new ServerSocket(0)) {
            port = socket.getLocalPort();
        }
        var config = new CoordinatorConfig("bind-" + UUID.randomUUID(), "127.0.0.1", port, 0, List.of("127.0.0.1:" + port),
                null, Path.of("model"), PlacementPolicy.defaults(), 1, Duration.ofSeconds(1), Duration.ofSeconds(5),
                Duration.ofSeconds(1), Duration.ofSeconds(60), 0.8, -1);
        assertThat(CoordinatorServer.hazelcastConfig(config).getProperty("hazelcast.socket.bind.any")).isEqualTo("false");
        HazelcastInstance member = Hazelcast.newHazelcastInstance(CoordinatorServer.hazelcastConfig(config));
        try {
            try (Socket ok = new Socket()) {
                ok.connect(new InetSocketAddress("127.0.0.1", port), 5000);
                assertThat(ok.isConnected()).isTrue();
            }
            // Linux routes all of 127/8 to loopback: a socket bound to every interface would accept this one
            assertThatThrownBy(() -> {
                try (Socket other = new Socket()) {
                    other.connect(new InetSocketAddress("127.0.0.2", port), 5000);
                }
            }).isInstanceOf(ConnectException.class);
        } finally {
            member.shutdown();
        }
    }

    @Test
    void aHazelcastClientWithTheClusterNameCannotConnect() throws IOException {
        int port;
        try (ServerSocket socket = new ServerSocket(0)) {
            port = socket.getLocalPort();
        }
        String name = "rogue-" + UUID.randomUUID();
        var config = new CoordinatorConfig(name, "127.0.0.1", port, 0, List.of("127.0.0.1:" + port), null, Path.of("model"),
                PlacementPolicy.defaults(), 1, Duration.ofSeconds(1), Duration.ofSeconds(5), Duration.ofSeconds(1),
                Duration.ofSeconds(60), 0.8, -1);
        HazelcastInstance member = Hazelcast.newHazelcastInstance(CoordinatorServer.hazelcastConfig(config));
        try {
            member.getMap("moe.placement").set("current", "the leader's");
            // what an attacker who reached the port and knew the cluster name did before: connect as a client
            ClientConfig rogue = new ClientConfig();
            rogue.setClusterName(name);
            rogue.setProperty("hazelcast.logging.type", "jdk");
            rogue.getNetworkConfig().addAddress("127.0.0.1:" + port);
            rogue.getConnectionStrategyConfig().getConnectionRetryConfig().setClusterConnectTimeoutMillis(3000);
            assertThatThrownBy(() -> HazelcastClient.newHazelcastClient(rogue).shutdown())
                    .isInstanceOf(IllegalStateException.class)
                    .hasMessageContaining("Unable to connect");
            assertThat(member.<String, String>getMap("moe.placement").get("current")).isEqualTo("the leader's");
        } finally {
            member.shutdown();
        }
    }

    @Test
    void rejectsABlankServiceName() {
        assertThatThrownBy(() -> config(List.of("10.1.2.3:5701"), " "))
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("service DNS name is blank");
    }
}
