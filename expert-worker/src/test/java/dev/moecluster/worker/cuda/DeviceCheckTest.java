package dev.moecluster.worker.cuda;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.offset;

import dev.moecluster.core.moe.ExpertWeights;
import dev.moecluster.core.tensor.DType;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The device check's parts that need no GPU: reading torch's figures, the summary table, the FP8 experts it makes. */
class DeviceCheckTest {
    @Test
    void readsTorchFiguresAndIgnoresOtherLines(@TempDir Path dir) throws Exception {
        Path file = dir.resolve("torch.tsv");
        Files.writeString(file, "torch_matmul\t2048\t6.5000\t633.40\ntorch_ffn\t2048\t7.1000\t580.00\n"
                + "torch_scaled_mm\t2048\t3.9000\t1100.00\nnoise\n");

        Map<String, double[]> t = DeviceCheck.readTorch(file);

        assertThat(t).containsOnlyKeys("torch_matmul 2048", "torch_ffn 2048", "torch_scaled_mm 2048");
        assertThat(t.get("torch_scaled_mm 2048")).containsExactly(3.9, 1100.0);
        assertThat(t.get("torch_matmul 2048")).containsExactly(6.5, 633.4);
        assertThat(DeviceCheck.readTorch(dir.resolve("absent.tsv"))).isEmpty();
    }

    @Test
    void summaryRowsCompareOurBestAndChosenTileWithTorchMatmul() {
        double flops2048 = 6.0 * 8 * 2048 * 5120 * 8192;
        DeviceCheck check = new DeviceCheck(20, Map.of("torch_matmul 2048", new double[] {flops2048 / 600e9, 600}));
        check.recordKernels(2048, TileConfig.LARGE, flops2048 / 400e9);   // 400 TFLOP/s
        check.recordKernels(2048, TileConfig.MEDIUM, flops2048 / 300e9);
        check.recordKernels(2048, TileConfig.SMALL, flops2048 / 200e9);

        List<String> lines = check.summary("NVIDIA H100");

        assertThat(lines.getFirst()).contains("NVIDIA H100");
        assertThat(lines.get(1)).startsWith("| rows/expert | ours 128x256 TFLOP/s | ours 128x128 TFLOP/s | ours 64x128 TFLOP/s |"
                + " ours sm90_128x256 TFLOP/s | ours sm90_128x128 TFLOP/s | ours sm90_64x128 TFLOP/s | auto tile |");
        assertThat(lines.get(2).split("\\|")).hasSize(lines.get(1).split("\\|").length);
        assertThat(lines).contains("| 2048 | 400.0 | 300.0 | 200.0 | n/a | n/a | n/a | 128x128 | 600.0 | n/a | 50% | 67% | n/a | n/a |",
                "| 16 | n/a | n/a | n/a | n/a | n/a | n/a | 64x128 | n/a | n/a | n/a | n/a | n/a | n/a |");
        assertThat(lines.getLast()).isEqualTo("RESULT: correctness PASS");
    }

    @Test
    void onHopperTheSummaryComparesTheChosenWgmmaTileAndShowsTorchFp8() {
        double flops256 = 6.0 * 8 * 256 * 5120 * 8192;
        DeviceCheck check = new DeviceCheck(20, Map.of("torch_matmul 256", new double[] {flops256 / 500e9, 500},
                "torch_scaled_mm 256", new double[] {flops256 / 900e9, 900}));
        check.hopper(true);
        check.recordKernels(256, TileConfig.MEDIUM, flops256 / 250e9);
        check.recordKernels(256, TileConfig.HOPPER_MEDIUM, flops256 / 450e9);

        List<String> lines = check.summary("NVIDIA H200");

        assertThat(lines).contains("| 256 | n/a | 250.0 | n/a | n/a | 450.0 | n/a | sm90_128x128 | 500.0 | n/a | 90% | 90% | n/a | 900.0 |");
    }

    @Test
    void fp8FiguresFollowTheTableBesideTheBf16KernelsOfTheSameRows() {
        double flops256 = 6.0 * 8 * 256 * 5120 * 8192;
        DeviceCheck check = new DeviceCheck(20, Map.of());
        check.hopper(true);
        check.recordKernels(256, TileConfig.HOPPER_MEDIUM, flops256 / 400e9);
        check.recordFp8(256, flops256 / 200e9, 12.5);
        check.recordFp8(16, 1.0, 3.0);

        List<String> lines = check.summary("NVIDIA H200");

        assertThat(lines).contains(
                "FP8 weights, rows/expert 256: fp8 kernels (128x128) 200.0 TFLOP/s, 0.50x the bf16 kernels' (auto tile); one batch end to end 12.50 ms",
                "FP8 weights, rows/expert 16: fp8 kernels (64x128) 32.2 TFLOP/s, n/a x the bf16 kernels' (auto tile); one batch end to end 3.00 ms");
        assertThat(lines.getLast()).isEqualTo("RESULT: correctness PASS");
    }

    @Test
    void fp8ExpertsOfTheCheckAreQuantizedPerChannelOrHoldOnlySubnormalCodes() {
        try (Arena arena = Arena.ofShared()) {
            ExpertWeights w = DeviceCheck.fp8Experts(arena, 1, 64, 96, 1, false).getFirst();
            assertThat(w.dtype()).isEqualTo(DType.FP8_E4M3);
            float[] gate = w.dequantized(arena).gate().toFloatArray();
            double bound = Math.sqrt(3.0 / 64);
            float rowMax = 0;
            for (int c = 0; c < 64; c++) {
                assertThat(Math.abs(gate[c])).isLessThanOrEqualTo((float) (bound * 1.0001));
                rowMax = Math.max(rowMax, Math.abs(gate[c]));
            }
            assertThat(w.scales().gate()[0] * 448f).as("the row's largest weight is code 448").isCloseTo(rowMax, offset(1e-6f));

            ExpertWeights sub = DeviceCheck.fp8Experts(arena, 1, 64, 96, 2, true).getFirst();
            MemorySegment codes = sub.down().data();
            for (long i = 0; i < codes.byteSize(); i++) {
                assertThat(codes.get(ValueLayout.JAVA_BYTE, i) & 0x78).as("exponent field of code %d", i).isZero();
            }
            // outputs of about the same size as the quantized expert's, so a flushed subnormal shows
            float[] x = new float[4 * 64];
            Arrays.fill(x, 0.5f);
            float[] a = new float[x.length];
            float[] b = new float[x.length];
            w.forward(x, 4, a);
            sub.forward(x, 4, b);
            double na = 0;
            double nb = 0;
            for (int i = 0; i < a.length; i++) {
                na += a[i] * a[i];
                nb += b[i] * b[i];
            }
            assertThat(Math.sqrt(nb / na)).isBetween(0.2, 5.0);
        }
    }
}
