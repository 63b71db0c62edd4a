package dev.moecluster.router;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.moecluster.core.placement.ExpertPlacement;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;

class RouterConfigTest {
    private static final RouterConfig DEFAULTS = RouterConfig.defaults(Path.of("model"), ExpertPlacement.none());

    @Test
    void admitsFourFullSizeMoeForwardCallsInFlightByDefault() {
        assertThat(DEFAULTS.maxTokensPerRequest()).isEqualTo(8192);
        assertThat(DEFAULTS.maxTokensInFlight()).isEqualTo(4 * 8192);
        assertThat(DEFAULTS.withMaxTokensInFlight(10_000).maxTokensInFlight()).isEqualTo(10_000);
        // every with… copy keeps it
        assertThat(DEFAULTS.withMaxTokensInFlight(10_000).withPort(5).withMetricsPort(0).withHealthPort(0).maxTokensInFlight())
                .isEqualTo(10_000);
    }

    @Test
    void tokensInFlightAreNeverFewerThanOneCallTakes() {
        assertThatThrownBy(() -> DEFAULTS.withMaxTokensInFlight(8191))
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessage("MoeForward tokens in flight (8191) must be at least the tokens of one call (8192)");
        // raising the per-call limit raises the tokens in flight with it where they would be fewer
        assertThat(DEFAULTS.withMaxTokensPerRequest(100_000).maxTokensInFlight()).isEqualTo(100_000);
        assertThat(DEFAULTS.withMaxTokensPerRequest(16).maxTokensInFlight()).isEqualTo(4 * 8192);
    }

    @Test
    void backendIsCpuByDefaultKeptByEveryCopyAndCheckedByName() {
        assertThat(DEFAULTS.backend()).isEqualTo("cpu");
        RouterConfig cuda = DEFAULTS.withBackend("cuda");
        assertThat(cuda.withPort(5).withMetricsPort(0).withHttpPort(0).withChannelsPerWorker(2)
                .withDataPlane(null).withMaxTokensPerRequest(16).backend()).isEqualTo("cuda");
        assertThat(DEFAULTS.withBackend(null).backend()).isEqualTo("cpu");
        assertThatThrownBy(() -> DEFAULTS.withBackend("auto"))
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessage("router backend must be cpu or cuda, got 'auto'");
    }

    @Test
    void aCudaRouterRefusesToStartUntilTheDevicePathExists() {
        assertThatThrownBy(() -> RouterServer.start(DEFAULTS.withBackend("cuda")))
                .isInstanceOf(IllegalStateException.class)
                .hasMessageContaining("the router's cuda backend is not available yet");
    }

    @Test
    void theDefaultMessageLimitTakesACallOfTheLargestSizeInF32() {
        // Llama 4 (hidden 5,120) at the default 8,192 tokens: 160 MiB of f32 rows and 1 MiB to spare
        assertThat(RouterConfig.maxInboundBytesFor(8192, 5120)).isEqualTo(161 << 20);
        // a small model keeps the 64 MiB floor
        assertThat(RouterConfig.maxInboundBytesFor(8192, 64)).isEqualTo(RouterConfig.DEFAULT_MAX_INBOUND_BYTES);
        assertThatThrownBy(() -> RouterConfig.maxInboundBytesFor(131_072, 5120))
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessage("131072 tokens of hidden size 5120 in f32 take 2561 MiB, past gRPC's 2 GiB message limit: lower --max-tokens");
    }
}
