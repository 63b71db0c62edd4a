package dev.moecluster.cli;

import dev.moecluster.core.model.Architecture;
import dev.moecluster.core.model.ModelLocation;
import java.io.IOException;
import java.nio.file.Path;
import picocli.CommandLine.Option;

/** {@code --model DIR|ORG/NAME[@REVISION]} or, without it, the built-in tiny model of {@code --arch}. */
final class ModelOptions {
    @Option(names = "--model", paramLabel = "DIR|ORG/NAME[@REV]",
            description = "Hugging Face model directory (config.json, *.safetensors), or a hub id such as "
                    + "mistralai/Mixtral-8x7B-Instruct-v0.1[@REVISION] found offline in the Hugging Face cache "
                    + "($HF_HUB_CACHE, $HF_HOME/hub or ~/.cache/huggingface/hub; revision: a branch or tag in refs/, "
                    + "or a commit; default main). Default: a built-in tiny model.")
    String model;

    @Option(names = "--arch", paramLabel = "ARCH", defaultValue = "mixtral",
            description = "Architecture of the built-in model when --model is not given: mixtral, qwen3-moe, qwen2-moe or llama4 (default: ${DEFAULT-VALUE}).")
    String arch;

    Path resolve() throws IOException {
        return model != null ? ModelLocation.resolve(model) : DefaultModels.path(Architecture.fromCli(arch));
    }
}
