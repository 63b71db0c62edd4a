package dev.moecluster.cli;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.moecluster.worker.cuda.CudaAvailability;
import org.junit.jupiter.api.Test;

/** {@code moe router --backend}: the worker's semantics, for the dense model. */
class RouterBackendsTest {
    private static final CudaAvailability NONE = new CudaAvailability(false, "no NVIDIA driver: libcuda.so.1 not found");
    private static final CudaAvailability H200 = new CudaAvailability(true, "NVIDIA H200, sm_90, 132 SMs, 139.8 GiB");

    @Test
    void cpuIsCpuWhateverTheMachineHas() {
        assertThat(RouterBackends.resolve("cpu", NONE)).isEqualTo("cpu");
        assertThat(RouterBackends.resolve("cpu", H200)).isEqualTo("cpu");
    }

    @Test
    void cudaWithoutADeviceFailsSayingWhatIsMissing() {
        assertThatThrownBy(() -> RouterBackends.resolve("cuda", NONE))
                .isInstanceOf(IllegalStateException.class)
                .hasMessage("no CUDA device: no NVIDIA driver: libcuda.so.1 not found"
                        + " (use --backend cpu, or --backend auto to fall back to cpu)");
        assertThat(RouterBackends.resolve("cuda", H200)).isEqualTo("cuda");
    }

    @Test
    void autoFallsBackToCpu() {
        assertThat(RouterBackends.resolve("auto", NONE)).isEqualTo("cpu");
        // until the dense model has a device path, a usable GPU still means cpu
        assertThat(RouterBackends.resolve("auto", H200)).isEqualTo("cpu");
    }

    @Test
    void unknownNamesAreRefusedListingTheChoices() {
        assertThatThrownBy(() -> RouterBackends.resolve("tpu", H200))
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessage("unknown backend 'tpu' (available: cpu, cuda, auto)");
    }

    @Test
    void theCommandFailsClearlyOnCudaAndUnknownBackends() {
        Object[] cuda = MoeCommandTest.run("router", "--backend", "cuda", "--workers", "127.0.0.1:1", "--port", "0");
        assertThat(cuda[0]).isEqualTo(1);
        assertThat((String) cuda[2]).contains(CudaAvailability.probe().usable()
                ? "the router's cuda backend is not available yet" : "moe router: no CUDA device: ");
        Object[] tpu = MoeCommandTest.run("router", "--backend", "tpu", "--workers", "127.0.0.1:1", "--port", "0");
        assertThat(tpu[0]).isEqualTo(1);
        assertThat((String) tpu[2]).contains("unknown backend 'tpu' (available: cpu, cuda, auto)");
    }
}
