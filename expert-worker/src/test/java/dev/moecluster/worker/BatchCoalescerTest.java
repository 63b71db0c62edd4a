package dev.moecluster.worker;

import static org.assertj.core.api.Assertions.assertThat;

import dev.moecluster.core.moe.ExpertWeights;
import dev.moecluster.core.tensor.DType;
import dev.moecluster.core.tensor.RowBatch;
import java.lang.foreign.Arena;
import java.time.Duration;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;

class BatchCoalescerTest {
    private static final int H = 32;
    private static final int I = 48;

    private static ExpertWeights expert(Arena arena, SplittableRandom r) {
        return RandomExperts.bf16(arena, r, H, I);
    }

    private static RowBatch rows(int n, SplittableRandom r) {
        RowBatch b = RowBatch.onHeap(DType.BF16, n, H);
        for (int i = 0; i < n; i++) {
            b.putRow(i, RandomExperts.gaussian(H, r), 0, 1f);
        }
        return b;
    }

    /** The thread each slice of the batch finished on, after checking its output against the backend alone. */
    private static String computeOn(BatchCoalescer coalescer, ExpertWeights[] experts, int[] sliceRows) throws Exception {
        SplittableRandom r = new SplittableRandom(3);
        CompletableFuture<String> thread = new CompletableFuture<>();
        RowBatch[] in = new RowBatch[sliceRows.length];
        RowBatch[] out = new RowBatch[sliceRows.length];
        BatchCoalescer.Work[] work = new BatchCoalescer.Work[sliceRows.length];
        for (int s = 0; s < sliceRows.length; s++) {
            in[s] = rows(sliceRows[s], r);
            out[s] = RowBatch.onHeap(DType.BF16, sliceRows[s], H);
            work[s] = new BatchCoalescer.Work(0, s, experts[s], in[s], out[s],
                    () -> thread.complete(Thread.currentThread().getName()), thread::completeExceptionally, () -> false);
        }
        coalescer.submit(List.of(work));
        String name = thread.get(30, TimeUnit.SECONDS);
        try (CpuBackend cpu = new CpuBackend()) {
            for (int s = 0; s < sliceRows.length; s++) {
                RowBatch alone = RowBatch.onHeap(DType.BF16, sliceRows[s], H);
                cpu.compute(new Round(List.of(new Round.Slice(experts[s], in[s], alone))));
                for (int row = 0; row < alone.rows(); row++) {
                    for (int c = 0; c < H; c++) {
                        assertThat(out[s].get(row, c)).as("slice %d (%d, %d)", s, row, c).isEqualTo(alone.get(row, c));
                    }
                }
            }
        }
        return name;
    }

    @Test
    void aSmallBatchFindingTheComputeThreadIdleRunsOnTheSubmittingThread() throws Exception {
        SplittableRandom r = new SplittableRandom(1);
        try (Arena arena = Arena.ofShared(); BatchCoalescer coalescer = new BatchCoalescer(new CpuBackend(), Duration.ZERO)) {
            ExpertWeights[] experts = {expert(arena, r), expert(arena, r)};
            assertThat(computeOn(coalescer, experts, new int[] {3, 5})).isEqualTo(Thread.currentThread().getName());
            assertThat(coalescer.inlineRounds()).isEqualTo(1);
            assertThat(coalescer.rounds()).isEqualTo(1);
            assertThat(coalescer.rowsComputed()).isEqualTo(8);
            assertThat(coalescer.backendCalls()).isEqualTo(2);
        }
    }

    @Test
    void aBatchOverTheInlineBudgetGoesToTheComputeThread() throws Exception {
        SplittableRandom r = new SplittableRandom(2);
        int rows = (int) (BatchCoalescer.INLINE_MAX_MACS / (3L * H * I)) + 1;
        try (Arena arena = Arena.ofShared(); BatchCoalescer coalescer = new BatchCoalescer(new CpuBackend(), Duration.ZERO)) {
            ExpertWeights[] experts = {expert(arena, r)};
            assertThat(computeOn(coalescer, experts, new int[] {rows})).isEqualTo("moe-expert-compute");
            assertThat(coalescer.inlineRounds()).isZero();
            assertThat(coalescer.rowsComputed()).isEqualTo(rows);
        }
    }

    @Test
    void backendsBoundToTheirThreadAndCoalescingWindowsKeepEveryRoundOnTheComputeThread() throws Exception {
        SplittableRandom r = new SplittableRandom(4);
        try (Arena arena = Arena.ofShared()) {
            ExpertWeights[] experts = {expert(arena, r)};
            ExpertBackend boundToItsThread = new ForwardingBackend() { // as a device backend says
                @Override
                public String name() {
                    return "bound";
                }
            };
            try (BatchCoalescer coalescer = new BatchCoalescer(boundToItsThread, Duration.ZERO)) {
                assertThat(computeOn(coalescer, experts, new int[] {2})).isEqualTo("moe-expert-compute");
                assertThat(coalescer.inlineRounds()).isZero();
            }
            try (BatchCoalescer coalescer = new BatchCoalescer(new CpuBackend(), Duration.ofMillis(1))) {
                assertThat(computeOn(coalescer, experts, new int[] {2})).isEqualTo("moe-expert-compute");
                assertThat(coalescer.inlineRounds()).isZero();
            }
        }
    }
}
