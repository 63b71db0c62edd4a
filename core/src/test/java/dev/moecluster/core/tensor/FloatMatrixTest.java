package dev.moecluster.core.tensor;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import org.junit.jupiter.api.Test;

class FloatMatrixTest {

    @Test
    void getReadsRowMajor() {
        FloatMatrix m = new FloatMatrix(2, 3, new float[] {0, 1, 2, 3, 4, 5});
        assertThat(m.get(1, 0)).isEqualTo(3f);
        assertThat(m.get(0, 2)).isEqualTo(2f);
        assertThat(FloatMatrix.zeros(3, 4).data()).hasSize(12).containsOnly(0f);
    }

    @Test
    void rejectsDataThatDoesNotMatchTheShape() {
        assertThatThrownBy(() -> new FloatMatrix(2, 3, new float[5]))
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("2x3");
        assertThatThrownBy(() -> new FloatMatrix(-1, 0, new float[0])).isInstanceOf(IllegalArgumentException.class);
    }

    @Test
    void firstNonFiniteFindsNanAndInfinity() {
        assertThat(new FloatMatrix(1, 3, new float[] {1, 2, 3}).firstNonFinite()).isEqualTo(-1);
        assertThat(new FloatMatrix(1, 3, new float[] {1, Float.NaN, 3}).firstNonFinite()).isEqualTo(1);
        assertThat(new FloatMatrix(1, 3, new float[] {1, 2, Float.NEGATIVE_INFINITY}).firstNonFinite()).isEqualTo(2);
    }
}
