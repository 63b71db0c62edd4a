package dev.moecluster.worker;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.moecluster.core.placement.ExpertAssignment;
import java.net.InetAddress;
import java.nio.file.Path;
import java.util.Map;
import org.junit.jupiter.api.Test;

/** The address a worker registers under and routers dial. */
class WorkerAddressTest {
    private final WorkerConfig base = WorkerConfig.defaults("w", Path.of("model"), new ExpertAssignment(Map.of()));

    @Test
    void advertisedHostWinsOverTheBoundOne() {
        WorkerConfig c = base.withHost("0.0.0.0").withAdvertiseHost("moe-worker-3.moe-worker.moe.svc.cluster.local");

        assertThat(ExpertWorker.advertisedHost(c)).isEqualTo("moe-worker-3.moe-worker.moe.svc.cluster.local");
    }

    @Test
    void withoutOneTheBoundHostIsAdvertised() {
        assertThat(ExpertWorker.advertisedHost(base.withHost("10.1.2.3"))).isEqualTo("10.1.2.3");
    }

    @Test
    void bindingEveryInterfaceAdvertisesThisMachinesAddressNotTheWildcard() throws Exception {
        String advertised = ExpertWorker.advertisedHost(base.withHost("0.0.0.0"));

        assertThat(advertised).isNotEqualTo("0.0.0.0").isEqualTo(InetAddress.getLocalHost().getHostAddress());
    }

    @Test
    void aPortOrBlankInTheAdvertisedHostIsRefused() {
        assertThatThrownBy(() -> base.withAdvertiseHost("worker:50061")).hasMessageContaining("without a port");
        assertThatThrownBy(() -> base.withAdvertiseHost(" ")).hasMessageContaining("without a port");
    }
}
