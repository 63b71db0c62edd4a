package dev.moecluster.worker;

import dev.moecluster.core.moe.ExpertWeights;
import dev.moecluster.core.tensor.DType;
import dev.moecluster.core.tensor.RowBatch;
import java.lang.foreign.Arena;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;

/**
 * Runs experts on the CPU with core's tiled, multi-threaded Vector API kernels, weights as stored
 * (the memory-mapped checkpoint). Loading runs one row through an expert so its pages are resident
 * before its first round; each expert of a round is one FFN call over all its rows.
 */
public final class CpuBackend implements ExpertBackend {
    private final Map<ExpertWeights, Boolean> loaded = new ConcurrentHashMap<>();

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
            expert.forward(List.of(one), List.of(RowBatch.allocate(arena, DType.F32, 1, h)));
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
    public PendingRound submit(Round round) {
        for (List<Round.Slice> group : round.byExpert()) {
            List<RowBatch> in = new ArrayList<>(group.size());
            List<RowBatch> out = new ArrayList<>(group.size());
            for (Round.Slice s : group) {
                in.add(s.input());
                out.add(s.output());
            }
            group.getFirst().expert().forward(in, out);
        }
        return PendingRound.COMPLETED;
    }
}
