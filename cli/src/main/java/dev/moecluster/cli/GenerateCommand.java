package dev.moecluster.cli;

import dev.moecluster.client.GenerateStream;
import dev.moecluster.client.MoeClient;
import dev.moecluster.control.BearerToken;
import dev.moecluster.proto.GenerateResponse;
import dev.moecluster.proto.SamplingParams;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

/** {@code moe generate}: streams a completion from a running router to the terminal. */
@Command(name = "generate", mixinStandardHelpOptions = true,
        description = "Stream a completion for a prompt from a running router.")
final class GenerateCommand implements Callable<Integer> {
    @Option(names = "--target", defaultValue = "127.0.0.1:50051", description = "Router address (default: ${DEFAULT-VALUE}).")
    String target;

    @Option(names = "--token-file", paramLabel = "FILE",
            description = "Send the bearer token in FILE (content trimmed), for a router started with --auth-token-file.")
    Path tokenFile;

    @Mixin
    ClientTlsOptions tls;

    @Option(names = "--prompt", required = true, description = "Prompt text.")
    String prompt;

    @Option(names = "--max-tokens", defaultValue = "64", description = "Tokens to generate at most (default: ${DEFAULT-VALUE}).")
    int maxTokens;

    @Option(names = "--temperature", defaultValue = "0", description = "0 is greedy (default: ${DEFAULT-VALUE}).")
    float temperature;

    @Option(names = "--top-p", defaultValue = "1", description = "Nucleus mass in (0, 1] (default: ${DEFAULT-VALUE}).")
    float topP;

    @Option(names = "--top-k", defaultValue = "0", description = "Sample among the k most likely; 0 = all (default: ${DEFAULT-VALUE}).")
    int topK;

    @Option(names = "--seed", description = "Seed for reproducible sampling.")
    Long seed;

    @Option(names = "--stop", description = "Stop before this string (repeatable).")
    List<String> stop = List.of();

    @Override
    public Integer call() throws Exception {
        MoeClient.Builder builder = tls.client(target).deadline(Duration.ofMinutes(10));
        if (tokenFile != null) {
            BearerToken.readFrom(tokenFile); // the router's rules for the file, with its messages
            builder.bearerTokenFile(tokenFile);
        }
        SamplingParams.Builder sampling = SamplingParams.newBuilder().setMaxTokens(maxTokens).setTemperature(temperature)
                .setTopP(topP).setTopK(topK).addAllStop(stop);
        if (seed != null) {
            sampling.setSeed(seed);
        }
        try (MoeClient client = builder.build()) {
            long start = System.nanoTime();
            long first = 0;
            GenerateResponse last = null;
            System.out.print(prompt);
            try (GenerateStream stream = client.generate(prompt, sampling.build())) {
                while (stream.hasNext()) {
                    last = stream.next();
                    if (first == 0) {
                        first = System.nanoTime();
                    }
                    System.out.print(last.getText());
                    System.out.flush();
                }
            }
            System.out.println();
            double seconds = (System.nanoTime() - start) / 1e9;
            int tokens = last == null ? 0 : last.getUsage().getCompletionTokens();
            System.err.printf("[%s: %d prompt + %d generated tokens, first token after %.0f ms, %.1f tokens/s]%n",
                    last == null ? "no output" : last.getFinishReason().name().replace("FINISH_REASON_", "").toLowerCase(java.util.Locale.ROOT),
                    last == null ? 0 : last.getUsage().getPromptTokens(), tokens, (first - start) / 1e6, tokens / seconds);
            return 0;
        }
    }
}
