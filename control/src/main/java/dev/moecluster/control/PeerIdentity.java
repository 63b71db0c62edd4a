package dev.moecluster.control;

import io.grpc.Context;
import io.grpc.Contexts;
import io.grpc.Grpc;
import io.grpc.Metadata;
import io.grpc.ServerCall;
import io.grpc.ServerCallHandler;
import io.grpc.ServerInterceptor;
import java.net.InetAddress;
import java.security.cert.Certificate;
import java.security.cert.CertificateParsingException;
import java.security.cert.X509Certificate;
import java.util.ArrayList;
import java.util.Collection;
import java.util.List;
import java.util.Locale;
import javax.net.ssl.SSLPeerUnverifiedException;
import javax.net.ssl.SSLSession;

/**
 * The names a caller's verified client certificate vouches for: its subject and its subject alternative
 * names of type DNS and IP. A server binds what a caller claims to these, e.g. the coordinators accept a
 * worker's registration only under a host its certificate names, the check routers make when they dial it.
 *
 * @param subject the certificate's subject DN as RFC 2253 prints it
 * @param dnsNames DNS subject alternative names, as written (a leftmost {@code *} label is a wildcard)
 * @param ipAddresses IP subject alternative names
 */
public record PeerIdentity(String subject, List<String> dnsNames, List<String> ipAddresses) {
    /** The identity of the call being served, set by {@link #capture()}; null for a caller without a certificate. */
    public static final Context.Key<PeerIdentity> CURRENT = Context.key("moe-peer-identity");

    /** Names listed in a message: a certificate may carry thousands, a status must stay short. */
    static final int MAX_NAMES_LISTED = 8;

    private static final int GENERAL_NAME_DNS = 2;
    private static final int GENERAL_NAME_IP = 7;

    public PeerIdentity {
        dnsNames = List.copyOf(dnsNames);
        ipAddresses = List.copyOf(ipAddresses);
    }

    /** Puts the identity of each call's TLS client certificate into {@link #CURRENT} for the handlers. */
    public static ServerInterceptor capture() {
        return new ServerInterceptor() {
            @Override
            public <Q, R> ServerCall.Listener<Q> interceptCall(ServerCall<Q, R> call, Metadata headers, ServerCallHandler<Q, R> next) {
                PeerIdentity identity = of(call.getAttributes().get(Grpc.TRANSPORT_ATTR_SSL_SESSION));
                return identity == null ? next.startCall(call, headers)
                        : Contexts.interceptCall(Context.current().withValue(CURRENT, identity), call, headers, next);
            }
        };
    }

    /** The identity of the session's client certificate; null without TLS or without a certificate. */
    public static PeerIdentity of(SSLSession session) {
        X509Certificate leaf = leafCertificate(session);
        return leaf == null ? null : of(leaf);
    }

    /** The identity {@code cert} vouches for. */
    public static PeerIdentity of(X509Certificate cert) {
        List<String> dns = new ArrayList<>();
        List<String> ips = new ArrayList<>();
        try {
            Collection<List<?>> sans = cert.getSubjectAlternativeNames();
            if (sans != null) {
                for (List<?> san : sans) {
                    if (san.size() > 1 && san.get(0) instanceof Integer type && san.get(1) instanceof String value) {
                        if (type == GENERAL_NAME_DNS) {
                            dns.add(value);
                        } else if (type == GENERAL_NAME_IP) {
                            ips.add(value);
                        }
                    }
                }
            }
        } catch (CertificateParsingException e) {
            // no usable names: the certificate vouches for no host
        }
        return new PeerIdentity(cert.getSubjectX500Principal().getName(), dns, ips);
    }

    /** The session's peer certificate (the chain's first), or null without TLS or without a client certificate. */
    static X509Certificate leafCertificate(SSLSession session) {
        if (session == null) {
            return null;
        }
        try {
            Certificate[] chain = session.getPeerCertificates();
            return chain.length > 0 && chain[0] instanceof X509Certificate x ? x : null;
        } catch (SSLPeerUnverifiedException e) {
            return null;
        }
    }

    /**
     * Whether the certificate names {@code host} as a TLS client checks a server's name (RFC 6125): an IP
     * literal only by an IP name, any other host by a DNS name equal to it or a wildcard {@code *.rest}
     * covering exactly its first label; letter case and a trailing dot do not matter.
     */
    public boolean names(String host) {
        if (host == null || host.isEmpty()) {
            return false;
        }
        String bare = host.startsWith("[") && host.endsWith("]") ? host.substring(1, host.length() - 1) : host;
        InetAddress ip = ipLiteral(bare);
        if (ip != null) {
            return ipAddresses.stream().map(PeerIdentity::ipLiteral).anyMatch(ip::equals);
        }
        String name = canonical(bare);
        for (String pattern : dnsNames) {
            String p = canonical(pattern);
            if (p.equals(name)) {
                return true;
            }
            // a wildcard stands for one whole label, and never for a top-level domain's children ("*.com")
            if (p.startsWith("*.") && p.indexOf('.', 2) > 2) {
                int dot = name.indexOf('.');
                if (dot > 0 && name.substring(dot).equals(p.substring(1))) {
                    return true;
                }
            }
        }
        return false;
    }

    /** The names for a message: at most {@value #MAX_NAMES_LISTED}, each cut to an {@link ErrorText#excerpt}. */
    public String describeNames() {
        List<String> all = new ArrayList<>();
        dnsNames.forEach(n -> all.add("DNS:" + n));
        ipAddresses.forEach(n -> all.add("IP:" + n));
        if (all.isEmpty()) {
            return "no DNS or IP subject alternative names";
        }
        StringBuilder s = new StringBuilder();
        for (int i = 0; i < Math.min(all.size(), MAX_NAMES_LISTED); i++) {
            s.append(i == 0 ? "" : ", ").append(ErrorText.excerpt(all.get(i)));
        }
        if (all.size() > MAX_NAMES_LISTED) {
            s.append(" and ").append(all.size() - MAX_NAMES_LISTED).append(" more");
        }
        return s.toString();
    }

    private static String canonical(String dnsName) {
        String lower = dnsName.toLowerCase(Locale.ROOT);
        return lower.endsWith(".") ? lower.substring(0, lower.length() - 1) : lower;
    }

    /** {@code s} as an IP address if it is an IPv4 or IPv6 literal (never a DNS lookup), else null. */
    private static InetAddress ipLiteral(String s) {
        try {
            return InetAddress.ofLiteral(s);
        } catch (IllegalArgumentException notALiteral) {
            return null;
        }
    }
}
