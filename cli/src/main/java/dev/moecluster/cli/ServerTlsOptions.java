package dev.moecluster.cli;

import dev.moecluster.control.TlsConfig;
import java.nio.file.Path;
import picocli.CommandLine.Option;

/** {@code --tls-cert}, {@code --tls-key}, {@code --tls-ca} on a server command (router, worker, coordinator). */
final class ServerTlsOptions {
    @Option(names = "--tls-cert", paramLabel = "FILE",
            description = "PEM certificate chain; with --tls-key the gRPC port speaks TLS (the router also presents it to workers).")
    Path cert;

    @Option(names = "--tls-key", paramLabel = "FILE", description = "PEM private key (PKCS#8) of --tls-cert.")
    Path key;

    @Option(names = "--tls-ca", paramLabel = "FILE",
            description = "PEM CA bundle: client certificates are REQUIRED and verified against it (mutual TLS); the router verifies workers with it.")
    Path ca;

    /** The files checked now, or null for plaintext. */
    TlsConfig resolve() {
        TlsConfig tls = TlsConfig.fromPemFiles(cert, key, ca);
        if (tls != null && tls.certChain() == null) {
            throw new IllegalArgumentException("--tls-ca needs --tls-cert and --tls-key on a server");
        }
        return tls;
    }
}
