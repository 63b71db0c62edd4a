package dev.moecluster.cli;

import dev.moecluster.bench.MoeForwardLoad;
import dev.moecluster.core.model.ModelLocation;
import dev.moecluster.core.moe.ReferenceMoeBlock;
import dev.moecluster.core.tensor.DType;
import dev.moecluster.proto.GetModelInfoRequest;
import dev.moecluster.proto.ModelInfo;
import dev.moecluster.proto.RouterGrpc;
import io.grpc.ManagedChannel;
import dev.moecluster.control.BearerToken;
import java.nio.file.Path;
import java.util.Locale;
import java.util.concurrent.Callable;
import java.util.concurrent.TimeUnit;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

/** {@code moe probe}: sends MoeForward traffic to a running router and reports; checks results given the model. */
@Command(name = "probe", mixinStandardHelpOptions = true,
        description = "Send MoeForward calls to a running router, print latency and throughput; with --model, check every result against the in-process reference.")
final class ProbeCommand implements Callable<Integer> {
    @Option(names = "--target", defaultValue = "127.0.0.1:50051", description = "Router address (default: ${DEFAULT-VALUE}).")
    String target;

    @Option(names = "--token-file", paramLabel = "FILE",
            description = "Send the bearer token in FILE (content trimmed), for a router started with --auth-token-file.")
    Path tokenFile;

    @Mixin
    ClientTlsOptions tls;

    @Option(names = "--model", paramLabel = "DIR|ORG/NAME[@REV]",
            description = "The router's model (a directory, or a hub id in the local Hugging Face cache), to verify results against the reference.")
    String model;

    @Option(names = "--requests", defaultValue = "20", description = "Calls to send (default: ${DEFAULT-VALUE}).")
    int requests;

    @Option(names = "--tokens", defaultValue = "16", description = "Tokens per call (default: ${DEFAULT-VALUE}).")
    int tokens;

    @Option(names = "--concurrency", defaultValue = "1", description = "Calls in flight (default: ${DEFAULT-VALUE}).")
    int concurrency;

    @Option(names = "--max-message-mb", defaultValue = "64", paramLabel = "MIB",
            description = "Largest answer taken, MiB: an answer is as large as its call, so match the router's --max-message-mb (default: ${DEFAULT-VALUE}).")
    int maxMessageMb;

    @Override
    public Integer call() throws Exception {
        if (maxMessageMb < 1 || maxMessageMb > 2047) {
            throw new IllegalArgumentException("--max-message-mb must be 1..2047, got " + maxMessageMb);
        }
        BearerToken token = tokenFile == null ? null : BearerToken.readFrom(tokenFile);
        ManagedChannel channel = tls.channel(target, maxMessageMb * 1024 * 1024);
        try {
            var stub = RouterGrpc.newBlockingStub(channel);
            if (token != null) {
                stub = stub.withCallCredentials(token.callCredentials());
            }
            ModelInfo info = stub.withDeadlineAfter(10, TimeUnit.SECONDS).getModelInfo(GetModelInfoRequest.getDefaultInstance());
            System.out.printf("router %s serves %s (%s): hidden %d, MoE layers %s x %d experts, top-%d, %s%n", target,
                    info.getName(), info.getArchitecture(), info.getHiddenSize(), info.getMoeLayersList(),
                    info.getNumExperts(), info.getExpertsPerToken(), info.getDtype().name().toLowerCase(Locale.ROOT));
            DType dtype = info.getDtype() == dev.moecluster.proto.DType.F32 ? DType.F32 : DType.BF16;
            ReferenceMoeBlock reference = model == null ? null : ReferenceMoeBlock.open(ModelLocation.resolve(model));
            try {
                var load = new MoeForwardLoad(info.getName(), info.getHiddenSize(), info.getMoeLayersList(), reference);
                MoeForwardLoad.Report r = load.runAgainst(stub,
                        new MoeForwardLoad.Options(requests, tokens, concurrency, dtype, 1, reference != null));
                System.out.println(ClusterReport.throughput("probe", r));
                if (reference == null) {
                    return 0;
                }
                double limit = dtype == DType.F32 ? 1e-5 : 1e-2;
                boolean ok = r.maxRelativeError() < limit;
                System.out.printf("checked %d results against the reference: max relative error %.2e (limit %.0e) %s%n",
                        r.verified(), r.maxRelativeError(), limit, ok ? "OK" : "MISMATCH");
                return ok ? 0 : 1;
            } finally {
                if (reference != null) {
                    reference.close();
                }
            }
        } finally {
            channel.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
        }
    }
}
