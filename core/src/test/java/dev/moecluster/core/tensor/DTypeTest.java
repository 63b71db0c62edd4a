package dev.moecluster.core.tensor;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

class DTypeTest {

    @Test
    void byteSizesMatchTheFormats() {
        assertThat(DType.F32.byteSize()).isEqualTo(4);
        assertThat(DType.BF16.byteSize()).isEqualTo(2);
        assertThat(DType.F16.byteSize()).isEqualTo(2);
        assertThat(DType.FP8_E4M3.byteSize()).isEqualTo(1);
    }

    @Test
    void safetensorsNamesAreTheHeaderStrings() {
        assertThat(DType.fromSafetensors("F32")).isEqualTo(DType.F32);
        assertThat(DType.fromSafetensors("BF16")).isEqualTo(DType.BF16);
        assertThat(DType.fromSafetensors("F16")).isEqualTo(DType.F16);
        assertThat(DType.fromSafetensors("F8_E4M3")).isEqualTo(DType.FP8_E4M3);
        assertThatThrownBy(() -> DType.fromSafetensors("I64"))
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("I64");
    }

    @Test
    void parseAcceptsCommonSpellings() {
        assertThat(DType.parse("bfloat16")).isEqualTo(DType.BF16);
        assertThat(DType.parse("BF16")).isEqualTo(DType.BF16);
        assertThat(DType.parse("float32")).isEqualTo(DType.F32);
        assertThat(DType.parse("half")).isEqualTo(DType.F16);
        assertThat(DType.parse("float8_e4m3fn")).isEqualTo(DType.FP8_E4M3);
        assertThatThrownBy(() -> DType.parse("int8"))
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("int8");
    }
}
