package dev.moecluster.control;

import java.io.IOException;
import java.net.Socket;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.GeneralSecurityException;
import java.security.KeyStore;
import java.security.Principal;
import java.security.PrivateKey;
import java.security.cert.Certificate;
import java.security.cert.CertificateException;
import java.security.cert.X509Certificate;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.Supplier;
import java.util.logging.Logger;
import javax.net.ssl.KeyManager;
import javax.net.ssl.KeyManagerFactory;
import javax.net.ssl.SSLEngine;
import javax.net.ssl.TrustManager;
import javax.net.ssl.TrustManagerFactory;
import javax.net.ssl.X509ExtendedKeyManager;
import javax.net.ssl.X509ExtendedTrustManager;

/**
 * Key and trust managers over PEM files that follow the files when they change, so rotated
 * certificates (cert-manager renewing a Kubernetes Secret, which the kubelet swaps in place) are used
 * for new connections without a restart. Each handshake may look at the files' modification times,
 * at most once per {@code checkEvery}; new files are checked as at start, and files that do not check
 * out (half-written during a rotation) leave the previous material in use until they do.
 */
final class ReloadingTls {
    private static final Logger LOG = Logger.getLogger(ReloadingTls.class.getName());
    /** Each load gets its own key alias: TLS engines may cache key material by alias (Netty's OpenSSL one does). */
    private static final AtomicLong GENERATION = new AtomicLong();
    private static final char[] NO_PASSWORD = new char[0];

    private ReloadingTls() {}

    /** The certificate chain and key of {@code files} (chain first, then key), loaded by {@code load}. */
    static KeyManager keyManager(List<Path> files, Supplier<TlsConfig.Identity> load, Duration checkEvery) {
        Reloading<X509ExtendedKeyManager> current = new Reloading<>(files, () -> keyManagerOf(load.get()), checkEvery);
        // The one identity is offered whatever CA names the other side lists (issuers = null): a server
        // announces the CAs it trusted when its TLS context was built, so after a CA rotation the list
        // is stale, and filtering by it would send no certificate at all. The other side decides.
        return new X509ExtendedKeyManager() {
            @Override
            public String[] getClientAliases(String keyType, Principal[] issuers) {
                return current.get().getClientAliases(keyType, null);
            }

            @Override
            public String chooseClientAlias(String[] keyType, Principal[] issuers, Socket socket) {
                return current.get().chooseClientAlias(keyType, null, socket);
            }

            @Override
            public String chooseEngineClientAlias(String[] keyType, Principal[] issuers, SSLEngine engine) {
                return current.get().chooseEngineClientAlias(keyType, null, engine);
            }

            @Override
            public String[] getServerAliases(String keyType, Principal[] issuers) {
                return current.get().getServerAliases(keyType, null);
            }

            @Override
            public String chooseServerAlias(String keyType, Principal[] issuers, Socket socket) {
                return current.get().chooseServerAlias(keyType, null, socket);
            }

            @Override
            public String chooseEngineServerAlias(String keyType, Principal[] issuers, SSLEngine engine) {
                return current.get().chooseEngineServerAlias(keyType, null, engine);
            }

            @Override
            public X509Certificate[] getCertificateChain(String alias) {
                return current.get().getCertificateChain(alias);
            }

            @Override
            public PrivateKey getPrivateKey(String alias) {
                return current.get().getPrivateKey(alias);
            }
        };
    }

    /** Trusts the CA certificates of {@code file}, loaded by {@code load}; host names are checked as usual. */
    static TrustManager trustManager(Path file, Supplier<List<Certificate>> load, Duration checkEvery) {
        Reloading<X509ExtendedTrustManager> current = new Reloading<>(List.of(file), () -> trustManagerOf(load.get()), checkEvery);
        // every variant is passed on as is: the socket and engine ones are where the JDK checks host names
        return new X509ExtendedTrustManager() {
            @Override
            public void checkClientTrusted(X509Certificate[] chain, String authType) throws CertificateException {
                current.get().checkClientTrusted(chain, authType);
            }

            @Override
            public void checkClientTrusted(X509Certificate[] chain, String authType, Socket socket) throws CertificateException {
                current.get().checkClientTrusted(chain, authType, socket);
            }

            @Override
            public void checkClientTrusted(X509Certificate[] chain, String authType, SSLEngine engine) throws CertificateException {
                current.get().checkClientTrusted(chain, authType, engine);
            }

            @Override
            public void checkServerTrusted(X509Certificate[] chain, String authType) throws CertificateException {
                current.get().checkServerTrusted(chain, authType);
            }

            @Override
            public void checkServerTrusted(X509Certificate[] chain, String authType, Socket socket) throws CertificateException {
                current.get().checkServerTrusted(chain, authType, socket);
            }

            @Override
            public void checkServerTrusted(X509Certificate[] chain, String authType, SSLEngine engine) throws CertificateException {
                current.get().checkServerTrusted(chain, authType, engine);
            }

            @Override
            public X509Certificate[] getAcceptedIssuers() {
                return current.get().getAcceptedIssuers();
            }
        };
    }

    private static X509ExtendedKeyManager keyManagerOf(TlsConfig.Identity identity) {
        try {
            KeyStore store = KeyStore.getInstance("PKCS12");
            store.load(null, null);
            store.setKeyEntry("moe-" + GENERATION.incrementAndGet(), identity.key(), NO_PASSWORD,
                    identity.chain().toArray(Certificate[]::new));
            KeyManagerFactory factory = KeyManagerFactory.getInstance(KeyManagerFactory.getDefaultAlgorithm());
            factory.init(store, NO_PASSWORD);
            for (KeyManager m : factory.getKeyManagers()) {
                if (m instanceof X509ExtendedKeyManager x) {
                    return x;
                }
            }
            throw new IllegalStateException("the JDK's key manager factory made no X509ExtendedKeyManager");
        } catch (GeneralSecurityException | IOException e) {
            throw new IllegalStateException("cannot build a key manager: " + e.getMessage(), e);
        }
    }

    private static X509ExtendedTrustManager trustManagerOf(List<Certificate> cas) {
        try {
            KeyStore store = KeyStore.getInstance("PKCS12");
            store.load(null, null);
            for (int i = 0; i < cas.size(); i++) {
                store.setCertificateEntry("ca-" + i, cas.get(i));
            }
            TrustManagerFactory factory = TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
            factory.init(store);
            for (TrustManager m : factory.getTrustManagers()) {
                if (m instanceof X509ExtendedTrustManager x) {
                    return x;
                }
            }
            throw new IllegalStateException("the JDK's trust manager factory made no X509ExtendedTrustManager");
        } catch (GeneralSecurityException | IOException e) {
            throw new IllegalStateException("cannot build a trust manager: " + e.getMessage(), e);
        }
    }

    /** A value built from files, built again when their modification times change. */
    private static final class Reloading<T> {
        private final List<Path> files;
        private final Supplier<T> load;
        private final long checkNanos;
        private volatile T current;
        private volatile List<Object> stamps;
        private volatile long nextCheck;

        Reloading(List<Path> files, Supplier<T> load, Duration checkEvery) {
            this.files = List.copyOf(files);
            this.load = load;
            this.checkNanos = checkEvery.toNanos();
            this.stamps = stamps();
            this.current = load.get(); // at start a bad file fails, naming itself
            this.nextCheck = System.nanoTime() + checkNanos;
        }

        T get() {
            long now = System.nanoTime();
            if (now - nextCheck >= 0) {
                synchronized (this) {
                    if (now - nextCheck >= 0) {
                        nextCheck = now + checkNanos;
                        List<Object> seen = stamps();
                        if (!seen.equals(stamps)) {
                            try {
                                current = load.get();
                                stamps = seen;
                                LOG.info("TLS: new files in use for new connections: " + files);
                            } catch (RuntimeException e) {
                                LOG.warning("TLS: changed files are not usable (yet), the previous ones stay in use: "
                                        + e.getMessage());
                            }
                        }
                    }
                }
            }
            return current;
        }

        private List<Object> stamps() {
            List<Object> out = new ArrayList<>();
            for (Path f : files) {
                try {
                    out.add(Files.getLastModifiedTime(f));
                    out.add(Files.size(f));
                } catch (IOException e) {
                    out.add("unreadable"); // in the middle of a swap; looked at again at the next check
                }
            }
            return out;
        }
    }
}
