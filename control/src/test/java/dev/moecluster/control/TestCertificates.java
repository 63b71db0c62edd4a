package dev.moecluster.control;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.math.BigInteger;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.GeneralSecurityException;
import java.security.KeyPair;
import java.security.KeyPairGenerator;
import java.security.cert.X509Certificate;
import java.security.spec.ECGenParameterSpec;
import java.time.Duration;
import java.time.Instant;
import java.util.Base64;
import java.util.Date;
import java.util.concurrent.atomic.AtomicLong;
import org.bouncycastle.asn1.x500.X500Name;
import org.bouncycastle.asn1.x509.BasicConstraints;
import org.bouncycastle.asn1.x509.ExtendedKeyUsage;
import org.bouncycastle.asn1.x509.Extension;
import org.bouncycastle.asn1.x509.GeneralName;
import org.bouncycastle.asn1.x509.GeneralNames;
import org.bouncycastle.asn1.x509.KeyPurposeId;
import org.bouncycastle.asn1.x509.KeyUsage;
import org.bouncycastle.cert.X509v3CertificateBuilder;
import org.bouncycastle.cert.jcajce.JcaX509CertificateConverter;
import org.bouncycastle.cert.jcajce.JcaX509v3CertificateBuilder;
import org.bouncycastle.operator.OperatorCreationException;
import org.bouncycastle.operator.jcajce.JcaContentSignerBuilder;

/**
 * A throw-away certificate authority for TLS tests: a CA and the certificates it issues (EC P-256,
 * valid for 127.0.0.1 and localhost unless other names are given, for both server and client use), written as PEM files the way
 * {@code --tls-cert}, {@code --tls-key} and {@code --tls-ca} take them.
 */
public final class TestCertificates {
    private static final AtomicLong SERIALS = new AtomicLong(System.currentTimeMillis());

    private final Path dir;
    private final String name;
    private final KeyPair caKey;
    private final X509Certificate caCert;
    private final Path caFile;

    /** A PEM certificate and its PKCS#8 key. */
    public record Issued(Path cert, Path key) {}

    private TestCertificates(Path dir, String name) throws GeneralSecurityException, IOException {
        this.dir = Files.createDirectories(dir);
        this.name = name;
        this.caKey = newKeyPair();
        X500Name subject = new X500Name("CN=" + name + " test CA");
        X509v3CertificateBuilder b = builder(subject, subject, caKey);
        try {
            b.addExtension(Extension.basicConstraints, true, new BasicConstraints(true));
            b.addExtension(Extension.keyUsage, true, new KeyUsage(KeyUsage.keyCertSign | KeyUsage.cRLSign));
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        this.caCert = sign(b, caKey);
        this.caFile = write(name + "-ca.pem", pem("CERTIFICATE", caCert.getEncoded()));
    }

    /** A new CA named {@code name} whose files go to {@code dir}. */
    public static TestCertificates newAuthority(Path dir, String name) {
        try {
            return new TestCertificates(dir, name);
        } catch (GeneralSecurityException e) {
            throw new IllegalStateException(e);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /** The CA certificate, PEM. */
    public Path caFile() {
        return caFile;
    }

    /** A certificate for {@code cn} signed by this CA, valid for 127.0.0.1 and localhost. */
    public Issued issue(String cn) {
        return issue(cn, "IP:127.0.0.1", "DNS:localhost");
    }

    /** A certificate for {@code cn} signed by this CA, valid for exactly {@code subjectAltNames} ({@code DNS:name} or {@code IP:address}). */
    public Issued issue(String cn, String... subjectAltNames) {
        GeneralName[] names = new GeneralName[subjectAltNames.length];
        for (int i = 0; i < names.length; i++) {
            String san = subjectAltNames[i];
            names[i] = san.startsWith("IP:") ? new GeneralName(GeneralName.iPAddress, san.substring(3))
                    : san.startsWith("DNS:") ? new GeneralName(GeneralName.dNSName, san.substring(4))
                    : null;
            if (names[i] == null) {
                throw new IllegalArgumentException("a subject alternative name is DNS:name or IP:address, got " + san);
            }
        }
        try {
            KeyPair key = newKeyPair();
            X509v3CertificateBuilder b = builder(new X500Name("CN=" + name + " test CA"), new X500Name("CN=" + cn), key);
            b.addExtension(Extension.basicConstraints, true, new BasicConstraints(false));
            b.addExtension(Extension.keyUsage, true, new KeyUsage(KeyUsage.digitalSignature | KeyUsage.keyEncipherment));
            b.addExtension(Extension.extendedKeyUsage, false,
                    new ExtendedKeyUsage(new KeyPurposeId[] {KeyPurposeId.id_kp_serverAuth, KeyPurposeId.id_kp_clientAuth}));
            if (names.length > 0) {
                b.addExtension(Extension.subjectAlternativeName, false, new GeneralNames(names));
            }
            X509Certificate cert = sign(b, caKey);
            Path certFile = write(name + "-" + cn + ".crt", pem("CERTIFICATE", cert.getEncoded()));
            Path keyFile = write(name + "-" + cn + ".key", pem("PRIVATE KEY", key.getPrivate().getEncoded()));
            return new Issued(certFile, keyFile);
        } catch (GeneralSecurityException e) {
            throw new IllegalStateException(e);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /** {@code issued}'s certificate and key, trusting this CA: mutual TLS on either side. */
    public TlsConfig tls(Issued issued) {
        return TlsConfig.fromPemFiles(issued.cert(), issued.key(), caFile);
    }

    private static KeyPair newKeyPair() throws GeneralSecurityException {
        KeyPairGenerator g = KeyPairGenerator.getInstance("EC");
        g.initialize(new ECGenParameterSpec("secp256r1"));
        return g.generateKeyPair();
    }

    private static X509v3CertificateBuilder builder(X500Name issuer, X500Name subject, KeyPair key) {
        Instant now = Instant.now();
        return new JcaX509v3CertificateBuilder(issuer, BigInteger.valueOf(SERIALS.incrementAndGet()),
                Date.from(now.minus(Duration.ofHours(1))), Date.from(now.plus(Duration.ofDays(1))), subject, key.getPublic());
    }

    private static X509Certificate sign(X509v3CertificateBuilder b, KeyPair issuerKey) throws GeneralSecurityException {
        try {
            return new JcaX509CertificateConverter().getCertificate(
                    b.build(new JcaContentSignerBuilder("SHA256withECDSA").build(issuerKey.getPrivate())));
        } catch (OperatorCreationException e) {
            throw new GeneralSecurityException(e);
        }
    }

    private static String pem(String label, byte[] der) {
        String body = Base64.getMimeEncoder(64, "\n".getBytes(StandardCharsets.US_ASCII)).encodeToString(der);
        return "-----BEGIN " + label + "-----\n" + body + "\n-----END " + label + "-----\n";
    }

    private Path write(String file, String content) throws IOException {
        return Files.writeString(dir.resolve(file), content, StandardCharsets.US_ASCII);
    }
}
