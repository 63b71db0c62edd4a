package dev.moecluster.control;

import io.grpc.CallCredentials;
import io.grpc.ChannelCredentials;
import io.grpc.CompositeChannelCredentials;
import io.grpc.Grpc;
import io.grpc.Metadata;
import io.grpc.ServerCall;
import io.grpc.ServerCallHandler;
import io.grpc.ServerInterceptor;
import io.grpc.Status;
import java.security.cert.CertificateParsingException;
import java.security.cert.X509Certificate;
import java.util.ArrayList;
import java.util.Collection;
import java.util.List;
import java.util.Set;
import javax.naming.InvalidNameException;
import javax.naming.ldap.LdapName;
import javax.naming.ldap.Rdn;

/**
 * Who may call a worker's {@code ExpertService}: only routers. A shared internal token
 * ({@code --data-plane-token-file}, for plaintext clusters; the router sends it, the worker requires it)
 * and, under mutual TLS, an allow-list of router certificate names ({@code --allowed-clients}: a
 * subject DN as RFC 2253 prints it, its CN, or a subject alternative name), since any certificate of the
 * CA, the public API's client certificates included, passes the TLS handshake.
 *
 * @param token the internal token routers send and workers require; null for none
 * @param allowedClients certificate names a worker accepts; empty accepts any certificate of its CA
 */
public record DataPlaneAccess(BearerToken token, Set<String> allowedClients) {
    /** No token, no allow-list: whoever reaches the port (and passes TLS, if on). */
    public static final DataPlaneAccess OPEN = new DataPlaneAccess(null, Set.of());

    public DataPlaneAccess {
        allowedClients = allowedClients == null ? Set.of() : Set.copyOf(allowedClients);
        for (String name : allowedClients) {
            if (name.isBlank()) {
                throw new IllegalArgumentException("an allowed client name is blank");
            }
        }
    }

    public boolean open() {
        return token == null && allowedClients.isEmpty();
    }

    /**
     * The worker side: UNAUTHENTICATED for a call without the token or (with an allow-list) without a
     * client certificate, PERMISSION_DENIED for a certificate whose names are not on the list.
     */
    public ServerInterceptor serverInterceptor() {
        return new ServerInterceptor() {
            @Override
            public <Q, R> ServerCall.Listener<Q> interceptCall(ServerCall<Q, R> call, Metadata headers,
                    ServerCallHandler<Q, R> next) {
                if (token != null && !token.matches(BearerToken.presented(headers))) {
                    return BearerToken.refuse(call, Status.UNAUTHENTICATED.withDescription(
                            headers.containsKey(BearerToken.AUTHORIZATION) ? "invalid data-plane token"
                                    : "missing data-plane token: only routers may call workers"));
                }
                if (!allowedClients.isEmpty()) {
                    X509Certificate peer = PeerIdentity.leafCertificate(call.getAttributes().get(Grpc.TRANSPORT_ATTR_SSL_SESSION));
                    if (peer == null) {
                        return BearerToken.refuse(call, Status.UNAUTHENTICATED.withDescription(
                                "the data plane requires a router's client certificate"));
                    }
                    if (names(peer).stream().noneMatch(allowedClients::contains)) {
                        return BearerToken.refuse(call, Status.PERMISSION_DENIED.withDescription("client certificate "
                                + peer.getSubjectX500Principal().getName() + " is not an allowed router (--allowed-clients)"));
                    }
                }
                return next.startCall(call, headers);
            }
        };
    }

    /** The router side: sends the token with every call (null when there is none). */
    public CallCredentials callCredentials() {
        return token == null ? null : token.callCredentials();
    }

    /** The router side as channel credentials: {@code transport} (TLS or plaintext) plus the token when there is one. */
    public ChannelCredentials channelCredentials(ChannelCredentials transport) {
        return token == null ? transport : CompositeChannelCredentials.create(transport, token.callCredentials());
    }

    /** The subject DN (RFC 2253), its CNs, and every subject alternative name's value. */
    static List<String> names(X509Certificate cert) {
        List<String> names = new ArrayList<>();
        String dn = cert.getSubjectX500Principal().getName();
        names.add(dn);
        try {
            for (Rdn rdn : new LdapName(dn).getRdns()) {
                if (rdn.getType().equalsIgnoreCase("CN")) {
                    names.add(String.valueOf(rdn.getValue()));
                }
            }
        } catch (InvalidNameException e) {
            // the DN itself still counts
        }
        try {
            Collection<List<?>> sans = cert.getSubjectAlternativeNames();
            if (sans != null) {
                for (List<?> san : sans) {
                    if (san.size() > 1 && san.get(1) instanceof String value) {
                        names.add(value);
                    }
                }
            }
        } catch (CertificateParsingException e) {
            // no usable SANs: the subject decides
        }
        return names;
    }

    @Override
    public String toString() {
        return "DataPlaneAccess[token " + (token == null ? "none" : "set") + ", allowed clients " + allowedClients + "]";
    }
}
