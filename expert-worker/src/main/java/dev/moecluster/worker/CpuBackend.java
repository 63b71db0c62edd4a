package dev.moecluster.worker;

import dev.moecluster.core.kernel.CpuKernels;
import dev.moecluster.core.kernel.MatMul;
import dev.moecluster.core.moe.ExpertWeights;
import dev.moecluster.core.tensor.DType;
import dev.moecluster.core.tensor.RowBatch;
import java.lang.foreign.Arena;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.concurrent.ConcurrentHashMap;

/**
 * Runs experts on the CPU with one of core's tiled, multi-threaded GEMMs (native AVX2 or Vector API,
 * {@link CpuKernels}), weights as stored (the memory-mapped checkpoint). Loading runs one row through an expert so its pages are resident
 * before its first round; each expert of a round is one FFN call over all its rows.
 */
public final class CpuBackend implements ExpertBackend {
    private final Map<ExpertWeights, Boolean> loaded = new ConcurrentHashMap<>();
    private final MatMul kernel;

    /** A backend on the kernel {@code auto} picks: native where it can run, else the Vector API. */
    public CpuBackend() {
        this(CpuKernels.select("auto"));
    }

    public CpuBackend(MatMul kernel) {
        this.kernel = Objects.requireNonNull(kernel, "kernel is null");
    }

    /** The GEMM this backend runs. */
    public MatMul kernel() {
        return kernel;
    }

    @Override
    public String name() {
        return "cpu";
    }

    @Override
    public void load(ExpertWeights expert) {
        int h = expert.hiddenSize();
        try (Arena arena = Arena.ofConfined()) {
            RowBatch one = RowBatch.allocate(arena, DType.F32, 1, h);
            one.data().fill((byte) 0);
            expert.forward(List.of(one), List.of(RowBatch.allocate(arena, DType.F32, 1, h)), kernel);
        }
        loaded.put(expert, Boolean.TRUE);
    }

    @Override
    public void unload(ExpertWeights expert) {
        loaded.remove(expert);
    }

    @Override
    public BackendMemory memory() {
        long used = 0;
        for (ExpertWeights w : loaded.keySet()) {
            used += w.byteSize();
        }
        return new BackendMemory(used, -1, loaded.size());
    }

    @Override
    public boolean computesOnAnyThread() {
        return true;
    }

    @Override
    public PendingRound submit(Round round) {
        for (List<Round.Slice> group : round.byExpert()) {
            List<RowBatch> in = new ArrayList<>(group.size());
            List<RowBatch> out = new ArrayList<>(group.size());
            for (Round.Slice s : group) {
                in.add(s.input());
                out.add(s.output());
            }
            group.getFirst().expert().forward(in, out, kernel);
        }
        return PendingRound.COMPLETED;
    }
}
