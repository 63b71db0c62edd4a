package dev.moecluster.control;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.GeneralSecurityException;
import java.security.cert.CertificateFactory;
import java.security.cert.X509Certificate;
import java.util.stream.IntStream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Which hosts a certificate's subject alternative names cover, the way a TLS client checks a server's name. */
class PeerIdentityTest {
    @TempDir
    Path dir;

    private PeerIdentity identity(String cn, String... sans) throws IOException, GeneralSecurityException {
        TestCertificates ca = TestCertificates.newAuthority(dir.resolve("ca"), "identity");
        try (InputStream in = Files.newInputStream(ca.issue(cn, sans).cert())) {
            return PeerIdentity.of((X509Certificate) CertificateFactory.getInstance("X.509").generateCertificate(in));
        }
    }

    @Test
    void readsTheSubjectAndTheDnsAndIpNames() throws Exception {
        PeerIdentity id = identity("worker-3", "DNS:w3.example", "IP:10.1.2.3", "IP:::1");
        assertThat(id.subject()).isEqualTo("CN=worker-3");
        assertThat(id.dnsNames()).containsExactly("w3.example");
        assertThat(id.ipAddresses()).containsExactly("10.1.2.3", "0:0:0:0:0:0:0:1");
        assertThat(id.describeNames()).isEqualTo("DNS:w3.example, IP:10.1.2.3, IP:0:0:0:0:0:0:0:1");
    }

    @Test
    void dnsNamesMatchExactlyIgnoringCaseAndATrailingDot() throws Exception {
        PeerIdentity id = identity("w", "DNS:Worker-0.Moe.Example");
        assertThat(id.names("worker-0.moe.example")).isTrue();
        assertThat(id.names("WORKER-0.moe.example.")).isTrue();
        assertThat(id.names("worker-1.moe.example")).isFalse();
        assertThat(id.names("moe.example")).isFalse();
        assertThat(id.names("x.worker-0.moe.example")).isFalse();
        assertThat(id.names("")).isFalse();
        assertThat(id.names(null)).isFalse();
    }

    @Test
    void aWildcardCoversExactlyOneLeftmostLabel() throws Exception {
        // the chart's certificate names every worker pod so: *.<release>-moe-cluster-worker.<namespace>.svc.<domain>
        PeerIdentity id = identity("moe", "DNS:*.moe-moe-cluster-worker.moe.svc.cluster.local", "DNS:*.com");
        assertThat(id.names("moe-moe-cluster-worker-0.moe-moe-cluster-worker.moe.svc.cluster.local")).isTrue();
        assertThat(id.names("a.b.moe-moe-cluster-worker.moe.svc.cluster.local")).isFalse();
        assertThat(id.names("moe-moe-cluster-worker.moe.svc.cluster.local")).isFalse();
        assertThat(id.names(".moe-moe-cluster-worker.moe.svc.cluster.local")).isFalse();
        // no wildcard over a top-level domain's children
        assertThat(id.names("evil.com")).isFalse();
    }

    @Test
    void ipLiteralsMatchOnlyIpNamesInAnySpelling() throws Exception {
        PeerIdentity id = identity("w", "IP:127.0.0.1", "IP:::1", "DNS:10.0.0.9");
        assertThat(id.names("127.0.0.1")).isTrue();
        assertThat(id.names("[::1]")).isTrue();
        assertThat(id.names("0:0:0:0:0:0:0:1")).isTrue();
        assertThat(id.names("127.0.0.2")).isFalse();
        // an IP host is never matched by a DNS name that happens to spell it
        assertThat(id.names("10.0.0.9")).isFalse();
        // and a DNS host never by an IP name (no lookups)
        assertThat(id.names("localhost")).isFalse();
    }

    @Test
    void aCertificateWithoutSubjectAlternativeNamesNamesNoHostNotEvenItsCommonName() throws Exception {
        PeerIdentity id = identity("worker.example");
        assertThat(id.names("worker.example")).isFalse();
        assertThat(id.describeNames()).isEqualTo("no DNS or IP subject alternative names");
    }

    @Test
    void describingManyNamesListsAFewEachCut() throws Exception {
        String[] sans = IntStream.range(0, 20).mapToObj(i -> "DNS:w" + i + "-" + "x".repeat(200) + ".example").toArray(String[]::new);
        PeerIdentity id = identity("many", sans);
        String text = id.describeNames();
        assertThat(text).startsWith("DNS:w0-").endsWith(" and 12 more").contains("more characters)");
        assertThat(text.length()).isLessThan(PeerIdentity.MAX_NAMES_LISTED * (ErrorText.MAX_EXCERPT_LENGTH + 40));
    }
}
