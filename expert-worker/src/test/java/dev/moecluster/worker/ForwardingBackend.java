package dev.moecluster.worker;

import dev.moecluster.core.moe.ExpertWeights;

/** A cpu backend that tests change in one respect (its thread binding, its host memory) by overriding that method. */
abstract class ForwardingBackend implements ExpertBackend {
    final CpuBackend cpu = new CpuBackend();

    @Override
    public String name() {
        return "cpu";
    }

    @Override
    public void load(ExpertWeights expert) {
        cpu.load(expert);
    }

    @Override
    public void unload(ExpertWeights expert) {
        cpu.unload(expert);
    }

    @Override
    public BackendMemory memory() {
        return cpu.memory();
    }

    @Override
    public PendingRound submit(Round round) {
        return cpu.submit(round);
    }
}
