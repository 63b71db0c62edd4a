package dev.moecluster.control;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.time.Duration;
import java.util.List;
import org.junit.jupiter.api.Test;

/** What a component is told about the coordinators: control addresses checked at start, settings kept through copies. */
class ControlPlaneConfigTest {
    @Test
    void coordinatorAddressesMustBeHostAndPort() {
        for (String bad : List.of("coordinator", "coordinator:", ":50070", "coordinator:port", "coordinator:70000")) {
            assertThatThrownBy(() -> ControlPlaneConfig.of(List.of(bad))).as(bad)
                    .isInstanceOf(IllegalArgumentException.class)
                    .hasMessageContaining("is not HOST:PORT (the coordinators' --control-port)");
        }
        assertThatThrownBy(() -> ControlPlaneConfig.of(List.of())).hasMessageContaining("at least one coordinator address");
        assertThat(ControlPlaneConfig.of(List.of("moe-coordinator:50070", "[::1]:50070")).coordinators()).hasSize(2);
    }

    @Test
    void copiesKeepEverySetting() {
        BearerToken token = BearerToken.of("worker-secret");
        ControlPlaneConfig c = ControlPlaneConfig.of(List.of("c:50070")).withToken(token)
                .withHeartbeatInterval(Duration.ofMillis(300)).withPlacementKey(null).withTls(null);
        assertThat(c.token()).isSameAs(token);
        assertThat(c.heartbeatInterval()).isEqualTo(Duration.ofMillis(300));
        assertThat(c.toString()).doesNotContain("worker-secret");
        assertThatThrownBy(() -> c.withHeartbeatInterval(Duration.ZERO)).hasMessageContaining("must be positive");
    }
}
