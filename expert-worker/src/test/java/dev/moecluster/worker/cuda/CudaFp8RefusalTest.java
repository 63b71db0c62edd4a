package dev.moecluster.worker.cuda;

import static org.assertj.core.api.Assertions.assertThatCode;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.moecluster.core.tensor.DType;
import org.junit.jupiter.api.Test;

/** The cuda backend refuses FP8 experts with a message saying what to run instead, rather than misreading them. */
class CudaFp8RefusalTest {
    @Test
    void fp8WeightsAreRefusedNamingTheCpuBackend() {
        assertThatThrownBy(() -> CudaBackend.requireSupported(DType.FP8_E4M3))
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("FP8")
                .hasMessageContaining("--backend cpu");
        assertThatCode(() -> CudaBackend.requireSupported(DType.BF16)).doesNotThrowAnyException();
        assertThatCode(() -> CudaBackend.requireSupported(DType.F32)).doesNotThrowAnyException();
    }
}
