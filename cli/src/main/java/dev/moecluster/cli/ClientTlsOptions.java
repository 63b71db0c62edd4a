package dev.moecluster.cli;

import dev.moecluster.client.MoeClient;
import dev.moecluster.control.TlsConfig;
import dev.moecluster.router.RouterConfig;
import io.grpc.ManagedChannel;
import io.grpc.netty.shaded.io.grpc.netty.NettyChannelBuilder;
import java.nio.file.Path;
import picocli.CommandLine.Option;

/** {@code --tls-ca}, {@code --tls-cert}, {@code --tls-key} on a client command (generate, probe, admin). */
final class ClientTlsOptions {
    @Option(names = "--tls-ca", paramLabel = "FILE",
            description = "PEM CA bundle to verify the server with; any --tls-* option turns TLS on (without --tls-ca the JDK's CAs are trusted).")
    Path ca;

    @Option(names = "--tls-cert", paramLabel = "FILE",
            description = "PEM client certificate chain, for a server that requires client certificates (mutual TLS).")
    Path cert;

    @Option(names = "--tls-key", paramLabel = "FILE", description = "PEM private key (PKCS#8) of --tls-cert.")
    Path key;

    /**
     * A channel to {@code target}: TLS when any option was given, else plaintext. It takes messages as
     * large as a router with its default {@code --max-message-mb} accepts, not gRPC's 4 MiB, because a
     * MoeForward answer is as large as its request.
     */
    ManagedChannel channel(String target) {
        return channel(target, RouterConfig.DEFAULT_MAX_INBOUND_BYTES);
    }

    /** As {@link #channel(String)}, taking messages of up to {@code maxInboundBytes}. */
    ManagedChannel channel(String target, int maxInboundBytes) {
        return NettyChannelBuilder.forTarget(target, TlsConfig.channelCredentials(TlsConfig.fromPemFiles(cert, key, ca)))
                .maxInboundMessageSize(maxInboundBytes)
                .build();
    }

    /** A router client for {@code target} with these files; they are checked first, so a bad one is named before any call. */
    MoeClient.Builder client(String target) {
        MoeClient.Builder builder = MoeClient.builder(target);
        if (TlsConfig.fromPemFiles(cert, key, ca) == null) {
            return builder;
        }
        builder.tls();
        if (ca != null) {
            builder.tls(ca);
        }
        if (cert != null) {
            builder.clientCertificate(cert, key);
        }
        return builder;
    }
}
