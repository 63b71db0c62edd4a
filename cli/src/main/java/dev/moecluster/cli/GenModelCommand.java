package dev.moecluster.cli;

import dev.moecluster.core.model.Architecture;
import dev.moecluster.core.model.ModelConfig;
import dev.moecluster.core.model.ModelGenerator;
import dev.moecluster.core.tensor.DType;
import java.nio.file.Path;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/** {@code moe gen-model}: writes a small random model as a real Hugging Face directory. */
@Command(name = "gen-model", mixinStandardHelpOptions = true,
        description = "Write a random MoE model as a Hugging Face directory (config.json, safetensors with the published tensor names, tokenizer.json).")
final class GenModelCommand implements Callable<Integer> {
    @Option(names = "--arch", required = true, paramLabel = "ARCH", description = "mixtral, qwen3-moe, qwen2-moe or llama4.")
    String arch;

    @Option(names = "--out", required = true, paramLabel = "DIR", description = "Directory to write (created if absent).")
    Path out;

    @Option(names = "--layers", defaultValue = "2", description = "Decoder layers (default: ${DEFAULT-VALUE}).")
    int layers;

    @Option(names = "--hidden", defaultValue = "64", description = "hidden_size, a multiple of 8 (default: ${DEFAULT-VALUE}).")
    int hidden;

    @Option(names = "--intermediate", defaultValue = "128", description = "Expert FFN width (default: ${DEFAULT-VALUE}).")
    int intermediate;

    @Option(names = "--experts", defaultValue = "8", description = "Routed experts per MoE layer (default: ${DEFAULT-VALUE}).")
    int experts;

    @Option(names = "--top-k", defaultValue = "0", description = "Experts per token; 0 = the architecture's usual (Llama 4: 1, others: 2).")
    int topK;

    @Option(names = "--seed", defaultValue = "42", description = "Random seed; the same seed writes the same model (default: ${DEFAULT-VALUE}).")
    long seed;

    @Option(names = "--dtype", defaultValue = "bf16", description = "Weight dtype, bf16 or f32 (default: ${DEFAULT-VALUE}).")
    String dtype;

    @Option(names = "--shards", defaultValue = "1", description = "Safetensors files to split the weights into, with an index when > 1 (default: ${DEFAULT-VALUE}).")
    int shards;

    @Option(names = "--fp8-experts", description = "Write an FP8 checkpoint in the layout of Meta's Llama 4 FP8 release: routed experts"
            + " quantized to e4m3 with a per-channel weight_scale (compressed-tensors), everything else in --dtype; the"
            + " weights are the same-seed model's, quantized, so that model is its reference.")
    boolean fp8Experts;

    @Override
    public Integer call() throws Exception {
        var spec = new ModelGenerator.Spec(Architecture.fromCli(arch), layers, hidden, intermediate, experts, topK, seed,
                DType.parse(dtype), shards).withFp8Experts(fp8Experts);
        ModelConfig config = ModelGenerator.generate(spec, out);
        System.out.printf("wrote %s model to %s: %d layers (MoE layers %s), hidden %d, %d experts x intermediate %d, top-%d, %s%s%n",
                config.architecture().hfName(), out.toAbsolutePath(), config.numLayers(), config.moeLayerList(),
                config.hiddenSize(), config.numExperts(), config.expertIntermediateSize(), config.expertsPerToken(),
                config.dtype().name().toLowerCase(java.util.Locale.ROOT),
                config.expertDtype() == DType.FP8_E4M3 ? ", experts fp8 e4m3 with per-channel scales" : "");
        return 0;
    }
}
