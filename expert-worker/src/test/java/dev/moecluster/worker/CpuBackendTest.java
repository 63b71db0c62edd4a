package dev.moecluster.worker;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.within;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.moecluster.core.kernel.Gemm;
import dev.moecluster.core.kernel.NativeGemm;
import dev.moecluster.core.moe.ExpertWeights;
import dev.moecluster.core.tensor.DType;
import dev.moecluster.core.tensor.RowBatch;
import java.lang.foreign.Arena;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

class CpuBackendTest {
    private static final int H = 24;
    private static final int I = 40;

    private static ExpertWeights expert(Arena arena, SplittableRandom r) {
        return RandomExperts.bf16(arena, r, H, I);
    }

    private static RowBatch rows(DType dtype, int n, SplittableRandom r) {
        RowBatch b = RowBatch.onHeap(dtype, n, H);
        for (int i = 0; i < n; i++) {
            b.putRow(i, RandomExperts.gaussian(H, r), 0, 1f);
        }
        return b;
    }

    /** A round of many experts, slices of one expert interleaved with others', equals each slice alone. */
    @ParameterizedTest
    @EnumSource(value = DType.class, names = {"BF16", "FP8_E4M3", "F32"})
    void aRoundWithManyExpertsAndUnevenRowsEqualsEachSliceComputedAlone(DType dtype) {
        SplittableRandom r = new SplittableRandom(5);
        try (Arena arena = Arena.ofConfined(); CpuBackend cpu = new CpuBackend()) {
            List<ExpertWeights> experts = new ArrayList<>();
            for (int e = 0; e < 5; e++) {
                experts.add(expert(arena, r));
            }
            int[] sliceExpert = {3, 0, 3, 1, 4, 3, 2, 0};
            int[] sliceRows = {1, 7, 2, 13, 4, 1, 5, 3};
            List<Round.Slice> slices = new ArrayList<>();
            for (int s = 0; s < sliceExpert.length; s++) {
                slices.add(new Round.Slice(experts.get(sliceExpert[s]), rows(dtype, sliceRows[s], r),
                        RowBatch.onHeap(dtype, sliceRows[s], H)));
            }
            Round round = new Round(slices);
            assertThat(round.byExpert()).hasSize(5);
            assertThat(round.rows()).isEqualTo(36);
            cpu.compute(round);
            for (Round.Slice s : slices) {
                RowBatch alone = RowBatch.onHeap(dtype, s.input().rows(), H);
                cpu.compute(new Round(List.of(new Round.Slice(s.expert(), s.input(), alone))));
                for (int row = 0; row < alone.rows(); row++) {
                    for (int c = 0; c < H; c++) {
                        assertThat(s.output().get(row, c)).isCloseTo(alone.get(row, c), within(1e-6f));
                    }
                }
            }
        }
    }

    /** The native kernel (where it runs here) and the forced Vector API fallback compute the same round. */
    @ParameterizedTest
    @EnumSource(value = DType.class, names = {"BF16", "F32"})
    void nativeAndVectorKernelsAgreeOnARound(DType dtype) {
        NativeGemm.Availability a = NativeGemm.probe();
        assumeTrue(a.gemm().isPresent(), a.description());
        SplittableRandom r = new SplittableRandom(9);
        try (Arena arena = Arena.ofConfined(); CpuBackend vector = new CpuBackend(Gemm.VECTOR);
                CpuBackend nat = new CpuBackend(a.gemm().get())) {
            ExpertWeights e = expert(arena, r);
            RowBatch in = rows(dtype, 6, r);
            RowBatch viaVector = RowBatch.onHeap(DType.F32, 6, H);
            RowBatch viaNative = RowBatch.onHeap(DType.F32, 6, H);
            vector.compute(new Round(List.of(new Round.Slice(e, in, viaVector))));
            nat.compute(new Round(List.of(new Round.Slice(e, in, viaNative))));
            for (int row = 0; row < 6; row++) {
                for (int c = 0; c < H; c++) {
                    assertThat(viaNative.get(row, c)).isCloseTo(viaVector.get(row, c), within(1e-4f));
                }
            }
        }
    }

    @Test
    void loadComputeUnloadReturnsMemoryToWhereItWas() {
        SplittableRandom r = new SplittableRandom(6);
        try (Arena arena = Arena.ofConfined(); CpuBackend cpu = new CpuBackend()) {
            BackendMemory before = cpu.memory();
            ExpertWeights a = expert(arena, r);
            ExpertWeights b = expert(arena, r);
            cpu.load(a);
            cpu.load(b);
            assertThat(cpu.memory().usedBytes()).isEqualTo(before.usedBytes() + a.byteSize() + b.byteSize());
            assertThat(cpu.memory().experts()).isEqualTo(2);
            RowBatch out = RowBatch.onHeap(DType.BF16, 3, H);
            cpu.compute(new Round(List.of(new Round.Slice(a, rows(DType.BF16, 3, r), out))));
            assertThat(out.firstNonFinite()).isEqualTo(-1);
            cpu.unload(a);
            cpu.unload(b);
            assertThat(cpu.memory()).isEqualTo(before);
            assertThat(cpu.memory().capacityBytes()).isEqualTo(-1); // the cpu cannot tell: --memory-budget does
        }
    }

    @Test
    void theBudgetIsTheBackendsCapacityUnlessTheConfiguredOneIsSmaller() {
        assertThat(new BackendMemory(0, -1, 0).budget(8L << 30)).isEqualTo(8L << 30);
        assertThat(new BackendMemory(0, 80L << 30, 0).budget(8L << 30)).isEqualTo(8L << 30);
        assertThat(new BackendMemory(0, 4L << 30, 0).budget(8L << 30)).isEqualTo(4L << 30);
        assertThat(new BackendMemory(0, 4L << 30, 0).budget(0)).isEqualTo(4L << 30);
    }
}
