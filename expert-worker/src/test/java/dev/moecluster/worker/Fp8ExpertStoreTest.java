package dev.moecluster.worker;

import static org.assertj.core.api.Assertions.assertThat;

import dev.moecluster.core.model.Architecture;
import dev.moecluster.core.model.ModelConfig;
import dev.moecluster.core.model.ModelGenerator;
import dev.moecluster.core.model.ModelGenerator.Spec;
import dev.moecluster.core.moe.ExpertWeights;
import dev.moecluster.core.placement.ExpertAssignment;
import dev.moecluster.core.tensor.DType;
import dev.moecluster.core.tensor.RowBatch;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.Set;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** A worker's store holds an FP8 checkpoint's experts at one byte a weight and computes on them as stored. */
class Fp8ExpertStoreTest {
    @TempDir
    Path tmp;

    @Test
    void fp8ExpertsAreHeldAtOneBytePerWeightAndTheBackendCountsThem() throws Exception {
        Spec spec = new Spec(Architecture.LLAMA4, 2, 64, 96, 8, 0, 23, DType.BF16, 1);
        ModelConfig fp8 = ModelGenerator.generate(spec.withFp8Experts(true), tmp.resolve("fp8"));
        ModelConfig bf16 = ModelGenerator.generate(spec, tmp.resolve("bf16"));
        ExpertAssignment assignment = new ExpertAssignment(Map.of(1, Set.of(0, 2, 5)));
        try (CpuBackend fp8Backend = new CpuBackend(); CpuBackend bf16Backend = new CpuBackend();
                ExpertStore fp8Store = ExpertStore.load(tmp.resolve("fp8"), fp8, assignment, fp8Backend);
                ExpertStore bf16Store = ExpertStore.load(tmp.resolve("bf16"), bf16, assignment, bf16Backend)) {
            long perExpert = 3L * 64 * 96 + 4L * (2 * 96 + 64); // e4m3 codes plus an f32 scale per weight row
            assertThat(fp8Store.get(1, 2).dtype()).isEqualTo(DType.FP8_E4M3);
            assertThat(fp8Store.byteSize()).isEqualTo(3 * perExpert);
            assertThat(fp8Backend.memory().usedBytes()).isEqualTo(3 * perExpert);
            assertThat(fp8Backend.memory().experts()).isEqualTo(3);
            assertThat(bf16Store.byteSize()).isEqualTo(3 * 3L * 64 * 96 * 2);

            // One round through the backend on both: the FP8 expert gives the bf16 one's output within FP8's precision.
            RowBatch in = RowBatch.onHeap(DType.F32, 4, 64);
            for (int r = 0; r < 4; r++) {
                in.putRow(r, RandomExperts.gaussian(64, new java.util.SplittableRandom(r)), 0, 1f);
            }
            RowBatch outFp8 = RowBatch.onHeap(DType.F32, 4, 64);
            RowBatch outBf16 = RowBatch.onHeap(DType.F32, 4, 64);
            ExpertWeights q = fp8Store.get(1, 5);
            fp8Backend.compute(new Round(List.of(new Round.Slice(q, in, outFp8))));
            bf16Backend.compute(new Round(List.of(new Round.Slice(bf16Store.get(1, 5), in, outBf16))));
            double num = 0;
            double den = 0;
            float[] a = new float[64];
            float[] b = new float[64];
            for (int r = 0; r < 4; r++) {
                outFp8.widen(r, 1, a, 0);
                outBf16.widen(r, 1, b, 0);
                for (int c = 0; c < 64; c++) {
                    num += (a[c] - b[c]) * (double) (a[c] - b[c]);
                    den += b[c] * (double) b[c];
                }
            }
            assertThat(Math.sqrt(num / den)).isLessThan(0.08).isGreaterThan(1e-4);
        }
    }
}
