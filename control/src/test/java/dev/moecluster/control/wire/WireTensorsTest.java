package dev.moecluster.control.wire;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.assertj.core.api.Assertions.within;

import com.google.protobuf.ByteString;
import dev.moecluster.core.tensor.DType;
import dev.moecluster.core.tensor.FloatMatrix;
import dev.moecluster.core.tensor.Numerics;
import dev.moecluster.proto.Tensor;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

class WireTensorsTest {

    private static float[] gaussian(int n, long seed, double std) {
        SplittableRandom r = new SplittableRandom(seed);
        float[] v = new float[n];
        for (int i = 0; i < n; i++) {
            v[i] = (float) (r.nextGaussian() * std);
        }
        return v;
    }

    private static float[] scales(Tensor t) {
        float[] s = new float[t.getScales().size() / 4];
        t.getScales().asReadOnlyByteBuffer().order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer().get(s);
        return s;
    }

    @Test
    void f32RoundTripsExactly() {
        float[] v = {1f, -2.5f, 1f / 3f, Float.MIN_VALUE, -0f, 3.4e38f};
        Tensor t = WireTensors.encode(v, 0, 2, 3, DType.F32);
        assertThat(t.getDtype()).isEqualTo(dev.moecluster.proto.DType.F32);
        assertThat(t.getShapeList()).containsExactly(2L, 3L);
        assertThat(t.getData().size()).isEqualTo(24);
        assertThat(t.getScales().isEmpty()).isTrue();
        FloatMatrix m = WireTensors.decode(t, "hidden_states");
        assertThat(m.rows()).isEqualTo(2);
        assertThat(m.cols()).isEqualTo(3);
        for (int i = 0; i < v.length; i++) {
            assertThat(Float.floatToRawIntBits(m.data()[i])).isEqualTo(Float.floatToRawIntBits(v[i]));
        }
    }

    @Test
    void f32DataIsLittleEndian() {
        Tensor t = WireTensors.encode(new float[] {1f}, 0, 1, 1, DType.F32);
        // 1.0f = 0x3f800000, least significant byte first.
        assertThat(t.getData().toByteArray()).containsExactly(0x00, 0x00, 0x80, 0x3f);
        Tensor b = WireTensors.encode(new float[] {1f}, 0, 1, 1, DType.BF16);
        assertThat(b.getData().toByteArray()).containsExactly(0x80, 0x3f);
    }

    @ParameterizedTest
    @EnumSource(names = {"BF16", "F16"})
    void halfPrecisionRoundTripsToTheNearestRepresentableValue(DType dtype) {
        float[] v = gaussian(4 * 9, 7, 3.0);
        Tensor t = WireTensors.encode(v, 0, 4, 9, dtype);
        assertThat(t.getData().size()).isEqualTo(4 * 9 * 2);
        assertThat(t.getDtype()).isEqualTo(WireTensors.proto(dtype));
        FloatMatrix m = WireTensors.decode(t, "x");
        for (int i = 0; i < v.length; i++) {
            assertThat(m.data()[i]).isEqualTo(Numerics.roundTo(dtype, v[i]));
        }
    }

    @Test
    void encodeReadsFromTheGivenOffset() {
        float[] v = {9, 9, 9, 1, 2, 3, 4, 9};
        for (DType d : DType.values()) {
            FloatMatrix m = WireTensors.decode(WireTensors.encode(v, 3, 2, 2, d), "x");
            // FP8 rounds 3 to a step of its row's scale (4/448 per unit); the others hold small integers exactly.
            float tol = d == DType.FP8_E4M3 ? 3f / 16f : 0f;
            assertThat(m.data()).as(d.name()).containsExactly(new float[] {1, 2, 3, 4}, within(tol));
        }
    }

    @Test
    void encodeOfAMatrixUsesItsShape() {
        FloatMatrix m = new FloatMatrix(2, 2, new float[] {1, 2, 3, 4});
        Tensor t = WireTensors.encode(m, DType.F16);
        assertThat(t.getShapeList()).containsExactly(2L, 2L);
        assertThat(WireTensors.decode(t, "x")).usingRecursiveComparison().isEqualTo(m);
    }

    @Test
    void fp8CarriesOneScalePerRowMappingTheRowMaximumTo448() {
        float[] v = {
            1f, -2f, 0.5f, // amax 2
            0f, 0f, 0f, // all zero: scale 1
            100f, 50f, -400f, // amax 400
        };
        Tensor t = WireTensors.encode(v, 0, 3, 3, DType.FP8_E4M3);
        assertThat(t.getDtype()).isEqualTo(dev.moecluster.proto.DType.FP8_E4M3);
        assertThat(t.getData().size()).isEqualTo(9);
        assertThat(t.getScales().size()).isEqualTo(12);
        assertThat(scales(t)).containsExactly(2f / 448f, 1f, 400f / 448f);
        // The row maximum maps to the largest code.
        assertThat(t.getData().byteAt(1)).isEqualTo((byte) 0xfe); // -2 -> -448
        assertThat(t.getData().byteAt(8)).isEqualTo((byte) 0xfe); // -400 -> -448
        FloatMatrix m = WireTensors.decode(t, "x");
        assertThat(m.get(0, 1)).isCloseTo(-2f, within(1e-6f));
        assertThat(m.get(2, 2)).isCloseTo(-400f, within(1e-4f));
        assertThat(m.get(1, 0)).isZero();
        assertThat(m.get(1, 2)).isZero();
    }

    @Test
    void fp8ScalesAreIndependentPerRow() {
        // Rows a million times apart keep the same relative precision.
        float[] v = {1e-3f, 7e-4f, 3e-4f, 1e3f, 7e2f, 3e2f};
        FloatMatrix m = WireTensors.decode(WireTensors.encode(v, 0, 2, 3, DType.FP8_E4M3), "x");
        for (int i = 0; i < v.length; i++) {
            assertThat(m.data()[i]).isCloseTo(v[i], within(Math.abs(v[i]) / 16f));
        }
        assertThat(m.data()[1] / m.data()[0]).isCloseTo(m.data()[4] / m.data()[3], within(1e-6f));
    }

    @Test
    void fp8DecodeIsCodeTimesRowScale() {
        float[] v = gaussian(5 * 33, 11, 2.0);
        Tensor t = WireTensors.encode(v, 0, 5, 33, DType.FP8_E4M3);
        float[] s = scales(t);
        FloatMatrix m = WireTensors.decode(t, "x");
        for (int r = 0; r < 5; r++) {
            for (int c = 0; c < 33; c++) {
                byte code = t.getData().byteAt(r * 33 + c);
                assertThat(m.get(r, c)).isEqualTo(Numerics.fromFp8(code) * s[r]);
            }
        }
    }

    /** A row of random length mixing Gaussian values, zeros and extremes, scaled to a random decade. */
    private static float[] randomRow(SplittableRandom random) {
        float[] v = new float[1 + random.nextInt(40)];
        float magnitude = (float) Math.pow(10, random.nextInt(-6, 7));
        for (int i = 0; i < v.length; i++) {
            v[i] = switch (random.nextInt(10)) {
                case 0 -> 0f;
                case 1 -> magnitude;
                case 2 -> -magnitude * 1e-4f;
                default -> (float) (random.nextGaussian() * magnitude);
            };
        }
        return v;
    }

    @Test
    void fp8RoundTripErrorIsWithinHalfAStep() {
        SplittableRandom random = new SplittableRandom(3);
        for (int n = 0; n < 2000; n++) {
            float[] v = randomRow(random);
            Tensor t = WireTensors.encode(v, 0, 1, v.length, DType.FP8_E4M3);
            float scale = scales(t)[0];
            FloatMatrix m = WireTensors.decode(t, "x");
            for (int i = 0; i < v.length; i++) {
                // Normal codes: half a mantissa step, 2^-4 relative. Subnormal codes: half of 2^-9, scaled.
                double bound = Math.abs(v[i]) / 16.0 + scale * 0x1p-10 + Math.abs(v[i]) * 1e-6;
                assertThat((double) m.data()[i]).isCloseTo(v[i], within(bound));
            }
        }
    }

    @Test
    void fp8NeverTurnsFiniteValuesIntoNan() {
        float[] extremes = {Float.MIN_VALUE, -Float.MIN_VALUE, Float.MIN_NORMAL, 1e-40f, Float.MAX_VALUE, -Float.MAX_VALUE};
        SplittableRandom random = new SplittableRandom(4);
        for (int n = 0; n < 2000; n++) {
            float[] v = new float[1 + random.nextInt(8)];
            for (int i = 0; i < v.length; i++) {
                v[i] = random.nextBoolean() ? extremes[random.nextInt(extremes.length)] : (random.nextBoolean() ? 0f : 1f);
            }
            FloatMatrix m = WireTensors.decode(WireTensors.encode(v, 0, 1, v.length, DType.FP8_E4M3), "x");
            assertThat(m.firstNonFinite()).as(java.util.Arrays.toString(v)).isEqualTo(-1);
        }
    }

    @Test
    void fp8KeepsTinyRowsFinite() {
        // A row whose maximum over 448 underflows the f32 scale must not decode to NaN.
        float[] v = {Float.MIN_VALUE, 0f, -3 * Float.MIN_VALUE, 1e-40f};
        FloatMatrix m = WireTensors.decode(WireTensors.encode(v, 0, 1, 4, DType.FP8_E4M3), "x");
        assertThat(m.firstNonFinite()).isEqualTo(-1);
        assertThat(m.get(0, 1)).isZero();
        assertThat(m.get(0, 3)).isCloseTo(1e-40f, within(1e-41f));
    }

    @Test
    void everyDtypeRoundTripsShapeAndSizeIncludingEmptyOnes() {
        for (int rows = 0; rows <= 6; rows++) {
            for (int cols = 0; cols <= 9; cols++) {
                float[] v = gaussian(rows * cols, rows * 31L + cols, 1.0);
                for (DType d : DType.values()) {
                    Tensor t = WireTensors.encode(v, 0, rows, cols, d);
                    assertThat((long) t.getData().size() + t.getScales().size())
                            .isEqualTo(WireTensors.wireBytes(rows, cols, d));
                    FloatMatrix m = WireTensors.decode(t, "x");
                    assertThat(m.rows()).isEqualTo(rows);
                    assertThat(m.cols()).isEqualTo(cols);
                }
            }
        }
    }

    @Test
    void wireBytesCountsScalesForFp8() {
        assertThat(WireTensors.wireBytes(3, 4096, DType.BF16)).isEqualTo(3 * 4096 * 2L);
        assertThat(WireTensors.wireBytes(3, 4096, DType.F32)).isEqualTo(3 * 4096 * 4L);
        assertThat(WireTensors.wireBytes(3, 4096, DType.FP8_E4M3)).isEqualTo(3 * 4096 + 12L);
    }

    // ---------------------------------------------------------------- malformed input

    private static Tensor.Builder valid() {
        return WireTensors.encode(new float[6], 0, 2, 3, DType.BF16).toBuilder();
    }

    @Test
    void decodeRejectsTheWrongByteCountNamingShapeDtypeAndSizes() {
        Tensor t = valid().setData(ByteString.copyFrom(new byte[11])).build();
        assertThatThrownBy(() -> WireTensors.decode(t, "hidden_states"))
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessage("hidden_states: shape [2, 3] in BF16 needs 12 bytes of data, got 11");
    }

    @Test
    void decodeRejectsShapesThatAreNotTwoDimensional() {
        Tensor rank3 = valid().clearShape().addShape(1).addShape(2).addShape(3).build();
        assertThatThrownBy(() -> WireTensors.decode(rank3, "hidden_states"))
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessage("hidden_states: expected shape [tokens, hidden], got [1, 2, 3]");
        Tensor rank1 = valid().clearShape().addShape(6).build();
        assertThatThrownBy(() -> WireTensors.decode(rank1, "hidden_states"))
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("expected shape [tokens, hidden], got [6]");
    }

    @Test
    void decodeRejectsAnUnsetDtype() {
        Tensor t = valid().clearDtype().build();
        assertThatThrownBy(() -> WireTensors.decode(t, "hidden_states"))
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessage("hidden_states: dtype is unset or unknown (use F32, BF16, F16 or FP8_E4M3)");
        Tensor unknown = valid().setDtypeValue(42).build();
        assertThatThrownBy(() -> WireTensors.decode(unknown, "hidden_states"))
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("dtype is unset or unknown");
    }

    @Test
    void decodeRejectsFp8WithoutScales() {
        Tensor fp8 = WireTensors.encode(new float[6], 0, 2, 3, DType.FP8_E4M3);
        Tensor missing = fp8.toBuilder().clearScales().build();
        assertThatThrownBy(() -> WireTensors.decode(missing, "hidden_states"))
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessage("hidden_states: FP8_E4M3 needs one f32 scale per row (8 bytes), got 0");
        Tensor shortScales = fp8.toBuilder().setScales(ByteString.copyFrom(new byte[4])).build();
        assertThatThrownBy(() -> WireTensors.decode(shortScales, "x"))
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("got 4");
    }

    @Test
    void decodeRejectsNegativeShapes() {
        Tensor t = valid().setShape(0, -2).build();
        assertThatThrownBy(() -> WireTensors.decode(t, "x"))
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("invalid shape [-2, 3]");
    }

    @Test
    void decodeRejectsShapesTooLargeForOneMatrixEvenWhenTheirProductOverflows() {
        // 2^32 * 2^32 overflows a long to 0, which must not pass as an empty tensor.
        Tensor overflow = valid().setShape(0, 1L << 32).setShape(1, 1L << 32).setData(ByteString.EMPTY).build();
        assertThatThrownBy(() -> WireTensors.decode(overflow, "x"))
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("invalid shape");
        Tensor hugeRows = valid().setShape(0, 1L << 31).setShape(1, 0).setData(ByteString.EMPTY).build();
        assertThatThrownBy(() -> WireTensors.decode(hugeRows, "x"))
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("invalid shape");
        Tensor big = valid().setShape(0, 1L << 20).setShape(1, 1L << 20).build();
        assertThatThrownBy(() -> WireTensors.decode(big, "x"))
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("invalid shape");
    }

    @Test
    void decodeAcceptsAnEmptyBatch() {
        Tensor t = valid().setShape(0, 0).setData(ByteString.EMPTY).build();
        FloatMatrix m = WireTensors.decode(t, "x");
        assertThat(m.rows()).isZero();
        assertThat(m.cols()).isEqualTo(3);
    }

    @Test
    void decodeReadsBytesWrittenByAnotherEncoder() {
        // Little-endian f32 written independently of WireTensors.encode.
        ByteBuffer b = ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN).putFloat(1.5f).putFloat(-3f);
        Tensor t = Tensor.newBuilder().setDtype(dev.moecluster.proto.DType.F32).addShape(1).addShape(2)
                .setData(ByteString.copyFrom(b.array())).build();
        assertThat(WireTensors.decode(t, "x").data()).containsExactly(1.5f, -3f);
    }

    @ParameterizedTest
    @EnumSource(DType.class)
    void protoMappingRoundTrips(DType t) {
        assertThat(WireTensors.dtype(WireTensors.proto(t))).isEqualTo(t);
    }

    @Test
    void unsetProtoDtypeIsRejected() {
        assertThatThrownBy(() -> WireTensors.dtype(dev.moecluster.proto.DType.DTYPE_UNSPECIFIED))
                .isInstanceOf(IllegalArgumentException.class);
        assertThatThrownBy(() -> WireTensors.dtype(dev.moecluster.proto.DType.UNRECOGNIZED))
                .isInstanceOf(IllegalArgumentException.class);
    }

    @Test
    void rowsAreAViewOverTheMessageBytesAndTensorWrapsTheBatchArray() {
        Tensor t = WireTensors.encode(gaussian(3 * 8, 5, 1.0), 0, 3, 8, DType.BF16);
        dev.moecluster.core.tensor.RowBatch rows = WireTensors.rows(t, "x");
        // The same bytes, not a copy: a message parsed with aliasing hands its buffer to the kernel as it is.
        assertThat(rows.data().asByteBuffer()).isEqualTo(t.getData().asReadOnlyByteBuffer());
        Tensor again = WireTensors.tensor(rows);
        assertThat(again).isEqualTo(t);
    }
}
