package dev.moecluster.coordinator;

import static org.assertj.core.api.Assertions.assertThat;

import org.junit.jupiter.api.Test;

/** The host of a worker address, which its client certificate must name under mutual TLS. */
class WorkerHostTest {
    @Test
    void theHostIsTheAddressWithoutItsPort() {
        assertThat(ControlService.hostOf("10.0.0.7:50061")).isEqualTo("10.0.0.7");
        assertThat(ControlService.hostOf("moe-worker-0.moe-worker.moe.svc.cluster.local:50061"))
                .isEqualTo("moe-worker-0.moe-worker.moe.svc.cluster.local");
        assertThat(ControlService.hostOf("[::1]:50061")).isEqualTo("[::1]");
        assertThat(ControlService.hostOf("worker")).isEqualTo("worker");
        // an IPv6 literal without brackets has no port to strip
        assertThat(ControlService.hostOf("fe80::1")).isEqualTo("fe80::1");
    }
}
