package dev.moecluster.control;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class TlsConfigTest {
    @TempDir
    Path dir;

    @Test
    void noFilesMeansPlaintext() {
        assertThat(TlsConfig.fromPemFiles(null, null, null)).isNull();
    }

    @Test
    void loadsAChainKeyAndCaAndRequiresClientCertificatesWithACa() {
        TestCertificates ca = TestCertificates.newAuthority(dir, "a");
        TestCertificates.Issued server = ca.issue("server");
        TlsConfig tls = TlsConfig.fromPemFiles(server.cert(), server.key(), ca.caFile());
        assertThat(tls).isEqualTo(new TlsConfig(server.cert(), server.key(), ca.caFile()));
        assertThat(tls.requiresClientCertificates()).isTrue();
        assertThat(tls.serverCredentials()).isNotNull();
        assertThat(tls.channelCredentials()).isNotNull();
        assertThat(TlsConfig.fromPemFiles(server.cert(), server.key(), null).requiresClientCertificates()).isFalse();
        // a client may trust the CA without presenting a certificate
        assertThat(TlsConfig.fromPemFiles(null, null, ca.caFile()).channelCredentials()).isNotNull();
    }

    @Test
    void missingFileIsNamed() {
        TestCertificates ca = TestCertificates.newAuthority(dir, "a");
        TestCertificates.Issued server = ca.issue("server");
        Path missing = dir.resolve("nope.pem");
        assertThatThrownBy(() -> TlsConfig.fromPemFiles(missing, server.key(), ca.caFile()))
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessage("TLS certificate chain file " + missing + " does not exist");
        assertThatThrownBy(() -> TlsConfig.fromPemFiles(server.cert(), missing, ca.caFile()))
                .hasMessage("TLS private key file " + missing + " does not exist");
        assertThatThrownBy(() -> TlsConfig.fromPemFiles(server.cert(), server.key(), missing))
                .hasMessage("TLS CA file " + missing + " does not exist");
    }

    @Test
    void directoryIsUnreadable() {
        TestCertificates ca = TestCertificates.newAuthority(dir, "a");
        TestCertificates.Issued server = ca.issue("server");
        assertThatThrownBy(() -> TlsConfig.fromPemFiles(server.cert(), server.key(), dir))
                .hasMessageStartingWith("TLS CA file " + dir + " cannot be read");
    }

    @Test
    void filesThatAreNotTheExpectedPemAreNamed() throws Exception {
        TestCertificates ca = TestCertificates.newAuthority(dir, "a");
        TestCertificates.Issued server = ca.issue("server");
        Path text = Files.writeString(dir.resolve("text.pem"), "hello\n");
        assertThatThrownBy(() -> TlsConfig.fromPemFiles(text, server.key(), ca.caFile()))
                .hasMessage("TLS certificate chain file " + text + " holds no PEM certificate (expected -----BEGIN CERTIFICATE-----)");
        assertThatThrownBy(() -> TlsConfig.fromPemFiles(server.cert(), server.key(), server.key()))
                .hasMessage("TLS CA file " + server.key() + " holds no PEM certificate (expected -----BEGIN CERTIFICATE-----)");
        assertThatThrownBy(() -> TlsConfig.fromPemFiles(server.cert(), server.cert(), ca.caFile()))
                .hasMessage("TLS private key file " + server.cert() + " holds no PEM private key (expected -----BEGIN PRIVATE KEY-----)");
        Path garbled = Files.writeString(dir.resolve("garbled.pem"),
                "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
        assertThatThrownBy(() -> TlsConfig.fromPemFiles(garbled, server.key(), ca.caFile()))
                .hasMessageStartingWith("TLS certificate chain file " + garbled + " holds a malformed certificate");
    }

    @Test
    void pkcs1KeyIsRefusedWithTheConversionCommand() throws Exception {
        TestCertificates ca = TestCertificates.newAuthority(dir, "a");
        TestCertificates.Issued server = ca.issue("server");
        String body = Files.readString(server.key()).replace("PRIVATE KEY", "RSA PRIVATE KEY");
        Path pkcs1 = Files.writeString(dir.resolve("rsa.key"), body);
        assertThatThrownBy(() -> TlsConfig.fromPemFiles(server.cert(), pkcs1, ca.caFile()))
                .hasMessage("TLS private key file " + pkcs1 + " holds a 'RSA PRIVATE KEY'; an unencrypted PKCS#8 key is needed:"
                        + " openssl pkcs8 -topk8 -nocrypt -in " + pkcs1 + " -out key.pem");
    }

    @Test
    void keyOfAnotherCertificateIsRefused() {
        TestCertificates ca = TestCertificates.newAuthority(dir, "a");
        TestCertificates.Issued server = ca.issue("server");
        TestCertificates.Issued other = ca.issue("other");
        assertThatThrownBy(() -> TlsConfig.fromPemFiles(server.cert(), other.key(), ca.caFile()))
                .hasMessage("TLS private key file " + other.key() + " does not belong to the first certificate in " + server.cert());
    }

    @Test
    void certificateAndKeyGoTogether() {
        TestCertificates ca = TestCertificates.newAuthority(dir, "a");
        TestCertificates.Issued server = ca.issue("server");
        assertThatThrownBy(() -> TlsConfig.fromPemFiles(server.cert(), null, ca.caFile()))
                .hasMessage("--tls-cert and --tls-key go together: give both or neither");
        assertThatThrownBy(() -> TlsConfig.fromPemFiles(null, null, ca.caFile()).serverCredentials())
                .hasMessage("a TLS server needs --tls-cert and --tls-key (only --tls-ca was given)");
    }
}
