package dev.moecluster.cli;

import dev.moecluster.core.model.Architecture;
import java.io.IOException;
import java.nio.file.Path;
import picocli.CommandLine.Option;

/** {@code --model DIR} or, without it, the built-in tiny model of {@code --arch}. */
final class ModelOptions {
    @Option(names = "--model", paramLabel = "DIR",
            description = "Hugging Face model directory (config.json, *.safetensors). Default: a built-in tiny model.")
    Path model;

    @Option(names = "--arch", paramLabel = "ARCH", defaultValue = "mixtral",
            description = "Architecture of the built-in model when --model is not given: mixtral, qwen3-moe, qwen2-moe or llama4 (default: ${DEFAULT-VALUE}).")
    String arch;

    Path resolve() throws IOException {
        return model != null ? model : DefaultModels.path(Architecture.fromCli(arch));
    }
}
