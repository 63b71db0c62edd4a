package dev.moecluster.cli;

import dev.moecluster.core.model.ModelConfig;
import dev.moecluster.core.placement.ExpertPlacement;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

/** {@code moe placement}: writes a static placement file for {@code moe router/worker --placement}. */
@Command(name = "placement", mixinStandardHelpOptions = true,
        description = "Write a round-robin placement (JSON) of the model's experts over the given workers, to edit and pass to moe router/worker --placement.")
final class PlacementCommand implements Callable<Integer> {
    @Mixin
    ModelOptions model;

    @Option(names = "--workers", required = true, split = ",", paramLabel = "HOST:PORT,...", description = "Worker addresses, in order.")
    String[] workers;

    @Option(names = "--replicas", defaultValue = "1", description = "Workers per expert (default: ${DEFAULT-VALUE}).")
    int replicas;

    @Option(names = "--out", paramLabel = "FILE", description = "File to write; default: standard output.")
    Path out;

    @Override
    public Integer call() throws Exception {
        ModelConfig config = ModelConfig.load(model.resolve());
        ExpertPlacement p = ExpertPlacement.roundRobin(List.copyOf(Arrays.asList(workers)), config, replicas);
        String json = p.toJson();
        if (out == null) {
            System.out.println(json);
        } else {
            Files.writeString(out, json + System.lineSeparator());
            System.err.printf("wrote placement of %d MoE layers x %d experts over %d workers to %s%n",
                    config.moeLayerList().size(), config.numExperts(), workers.length, out);
        }
        return 0;
    }
}
