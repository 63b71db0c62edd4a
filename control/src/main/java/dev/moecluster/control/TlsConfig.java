package dev.moecluster.control;

import io.grpc.ChannelCredentials;
import io.grpc.InsecureChannelCredentials;
import io.grpc.ServerCredentials;
import io.grpc.TlsChannelCredentials;
import io.grpc.TlsServerCredentials;
import java.time.Duration;
import javax.net.ssl.KeyManager;
import javax.net.ssl.SSLContext;
import javax.net.ssl.TrustManager;
import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.AccessDeniedException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.security.GeneralSecurityException;
import java.security.KeyFactory;
import java.security.PrivateKey;
import java.security.Signature;
import java.security.cert.Certificate;
import java.security.cert.CertificateFactory;
import java.security.spec.PKCS8EncodedKeySpec;
import java.util.ArrayList;
import java.util.Base64;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * TLS material for a gRPC port or channel, from PEM files ({@code --tls-cert}, {@code --tls-key},
 * {@code --tls-ca}). A server with a CA requires client certificates signed by it (mutual TLS); a
 * client trusts the CA and presents its certificate, if it has one, as its identity.
 *
 * @param certChain PEM certificate chain, leaf first; null for a client that presents no certificate
 * @param privateKey PEM PKCS#8 private key of the chain's leaf; given exactly when {@code certChain} is
 * @param ca PEM CA bundle that verifies the other side; null on a server for TLS without client
 *     certificates, on a client to trust the JDK's default CAs
 */
public record TlsConfig(Path certChain, Path privateKey, Path ca) {
    /** How often, at most, a handshake looks whether the PEM files changed. */
    static final long RELOAD_CHECK_SECONDS = 10;

    private static final Pattern PEM_BLOCK = Pattern.compile(
            "-----BEGIN ([A-Z0-9 ]+)-----\\s*([A-Za-z0-9+/=\\s]*?)-----END \\1-----");

    public TlsConfig {
        if ((certChain == null) != (privateKey == null)) {
            throw new IllegalArgumentException("--tls-cert and --tls-key go together: give both or neither");
        }
        if (certChain == null && ca == null) {
            throw new IllegalArgumentException("TLS needs --tls-cert with --tls-key, --tls-ca, or all three");
        }
    }

    /**
     * Reads and checks the files now, so a bad one fails at start with its name; null (plaintext) when
     * all three are null.
     *
     * @throws IllegalArgumentException naming the file that is missing, unreadable or not the PEM expected
     */
    public static TlsConfig fromPemFiles(Path certChain, Path privateKey, Path ca) {
        if (certChain == null && privateKey == null && ca == null) {
            return null;
        }
        TlsConfig config = new TlsConfig(certChain, privateKey, ca);
        if (certChain != null) {
            config.identity();
        }
        if (ca != null) {
            certificates(ca, "CA");
        }
        return config;
    }

    /** Whether a server with this config requires client certificates. */
    public boolean requiresClientCertificates() {
        return ca != null;
    }

    /**
     * Credentials for a server port: its certificate and key; with a CA, client certificates REQUIRED.
     * Rotated files are picked up for new connections (checked at most every {@value #RELOAD_CHECK_SECONDS} s).
     */
    public ServerCredentials serverCredentials() {
        return serverCredentials(Duration.ofSeconds(RELOAD_CHECK_SECONDS));
    }

    ServerCredentials serverCredentials(Duration reloadCheck) {
        if (certChain == null) {
            throw new IllegalArgumentException("a TLS server needs --tls-cert and --tls-key (only --tls-ca was given)");
        }
        TlsServerCredentials.Builder b = TlsServerCredentials.newBuilder().keyManager(keyManager(reloadCheck));
        if (ca != null) {
            b.trustManager(trustManager(reloadCheck)).clientAuth(TlsServerCredentials.ClientAuth.REQUIRE);
        }
        return b.build();
    }

    /**
     * A server TLS context over the same rotating files as {@link #serverCredentials()}, for a port that is
     * not gRPC (the router's OpenAI-compatible HTTP API). With a CA the caller must also require client
     * certificates on each connection ({@code SSLParameters.setNeedClientAuth}); see {@link #requiresClientCertificates()}.
     */
    public SSLContext serverSslContext() {
        if (certChain == null) {
            throw new IllegalArgumentException("a TLS server needs --tls-cert and --tls-key (only --tls-ca was given)");
        }
        Duration reloadCheck = Duration.ofSeconds(RELOAD_CHECK_SECONDS);
        try {
            SSLContext context = SSLContext.getInstance("TLS");
            context.init(new KeyManager[] {keyManager(reloadCheck)},
                    ca == null ? null : new TrustManager[] {trustManager(reloadCheck)}, null);
            return context;
        } catch (GeneralSecurityException e) {
            throw new IllegalStateException("the JDK cannot build a TLS context: " + e.getMessage(), e);
        }
    }

    /**
     * Credentials for a channel: trusts the CA (default CAs without one), presents the certificate if any.
     * Rotated files are picked up for new connections, as on a server.
     */
    public ChannelCredentials channelCredentials() {
        return channelCredentials(Duration.ofSeconds(RELOAD_CHECK_SECONDS));
    }

    ChannelCredentials channelCredentials(Duration reloadCheck) {
        TlsChannelCredentials.Builder b = TlsChannelCredentials.newBuilder();
        if (certChain != null) {
            b.keyManager(keyManager(reloadCheck));
        }
        if (ca != null) {
            b.trustManager(trustManager(reloadCheck));
        }
        return b.build();
    }

    private KeyManager keyManager(Duration reloadCheck) {
        return ReloadingTls.keyManager(List.of(certChain, privateKey), this::identity, reloadCheck);
    }

    private TrustManager trustManager(Duration reloadCheck) {
        return ReloadingTls.trustManager(ca, () -> certificates(ca, "CA"), reloadCheck);
    }

    /** {@code tls.channelCredentials()}, or plaintext when {@code tls} is null. */
    public static ChannelCredentials channelCredentials(TlsConfig tls) {
        return tls == null ? InsecureChannelCredentials.create() : tls.channelCredentials();
    }

    /** A certificate chain, leaf first, and the leaf's private key. */
    record Identity(List<Certificate> chain, PrivateKey key) {}

    /** The chain and key, checked: both PEM, the key PKCS#8, and the key belongs to the chain's leaf. */
    private Identity identity() {
        List<Certificate> chain = certificates(certChain, "certificate chain");
        String text = read(privateKey, "private key");
        List<String[]> blocks = blocks(text);
        String[] key = blocks.stream().filter(b -> b[0].endsWith("PRIVATE KEY")).findFirst().orElseThrow(() ->
                new IllegalArgumentException("TLS private key file " + privateKey + " holds no PEM private key"
                        + " (expected -----BEGIN PRIVATE KEY-----)"));
        if (!key[0].equals("PRIVATE KEY")) {
            throw new IllegalArgumentException("TLS private key file " + privateKey + " holds a '" + key[0]
                    + "'; an unencrypted PKCS#8 key is needed: openssl pkcs8 -topk8 -nocrypt -in " + privateKey
                    + " -out key.pem");
        }
        PrivateKey parsed = parseKey(key[1]);
        if (!belongsTo(parsed, chain.getFirst())) {
            throw new IllegalArgumentException("TLS private key file " + privateKey
                    + " does not belong to the first certificate in " + certChain);
        }
        return new Identity(chain, parsed);
    }

    private PrivateKey parseKey(String base64) {
        byte[] pkcs8;
        try {
            pkcs8 = Base64.getMimeDecoder().decode(base64);
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException("TLS private key file " + privateKey + " holds malformed base64: " + e.getMessage(), e);
        }
        for (String algorithm : new String[] {"RSA", "EC"}) {
            try {
                return KeyFactory.getInstance(algorithm).generatePrivate(new PKCS8EncodedKeySpec(pkcs8));
            } catch (GeneralSecurityException notThisOne) {
                // try the next algorithm
            }
        }
        throw new IllegalArgumentException("TLS private key file " + privateKey + " is not an RSA or EC PKCS#8 key");
    }

    private static boolean belongsTo(PrivateKey key, Certificate leaf) {
        String algorithm = switch (key.getAlgorithm()) {
            case "RSA" -> "SHA256withRSA";
            default -> "SHA256withECDSA";
        };
        try {
            byte[] probe = "moe-cluster key check".getBytes(StandardCharsets.US_ASCII);
            Signature sign = Signature.getInstance(algorithm);
            sign.initSign(key);
            sign.update(probe);
            byte[] signature = sign.sign();
            Signature verify = Signature.getInstance(algorithm);
            verify.initVerify(leaf.getPublicKey());
            verify.update(probe);
            return verify.verify(signature);
        } catch (GeneralSecurityException e) {
            return false;
        }
    }

    /** The certificates of a PEM file (anything else it holds is ignored). */
    private static List<Certificate> certificates(Path file, String what) {
        String text = read(file, what);
        StringBuilder pem = new StringBuilder();
        for (String[] b : blocks(text)) {
            if (b[0].equals("CERTIFICATE")) {
                pem.append("-----BEGIN CERTIFICATE-----\n").append(b[1].strip()).append("\n-----END CERTIFICATE-----\n");
            }
        }
        if (pem.isEmpty()) {
            throw new IllegalArgumentException("TLS " + what + " file " + file
                    + " holds no PEM certificate (expected -----BEGIN CERTIFICATE-----)");
        }
        byte[] bytes = pem.toString().getBytes(StandardCharsets.US_ASCII);
        try {
            List<Certificate> certs = new ArrayList<>(CertificateFactory.getInstance("X.509")
                    .generateCertificates(new ByteArrayInputStream(bytes)));
            return List.copyOf(certs);
        } catch (GeneralSecurityException | IllegalArgumentException e) {
            throw new IllegalArgumentException("TLS " + what + " file " + file + " holds a malformed certificate: "
                    + e.getMessage(), e);
        }
    }

    /** PEM blocks as (label, base64 body). */
    static List<String[]> blocks(String text) {
        List<String[]> blocks = new ArrayList<>();
        Matcher m = PEM_BLOCK.matcher(text);
        while (m.find()) {
            blocks.add(new String[] {m.group(1), m.group(2)});
        }
        return blocks;
    }

    private static String read(Path file, String what) {
        try {
            return Files.readString(file, StandardCharsets.ISO_8859_1);
        } catch (NoSuchFileException e) {
            throw new IllegalArgumentException("TLS " + what + " file " + file + " does not exist", e);
        } catch (AccessDeniedException e) {
            throw new IllegalArgumentException("TLS " + what + " file " + file + " cannot be read: permission denied", e);
        } catch (IOException e) {
            throw new IllegalArgumentException("TLS " + what + " file " + file + " cannot be read: " + e.getMessage(), e);
        }
    }
}
