package dev.moecluster.control;

import static java.util.Objects.requireNonNull;

import java.time.Duration;
import java.util.List;

/**
 * How a worker or router reaches the coordinators' control API and how often it reports.
 *
 * @param coordinators the coordinators' control addresses ({@code host:port}, {@code --control-port}); calls
 *     go to one and move to the next when it does not answer
 * @param heartbeatInterval how often workers and routers heartbeat (and poll what they follow)
 * @param placementKey the leader's public key: placements (routers) and assignments (workers) without its
 *     valid signature are ignored; null accepts unsigned records
 * @param tls TLS to the coordinators: the component's own certificate is presented when the coordinators
 *     require client certificates; null for plaintext
 * @param token the role token the coordinators require of this component ({@code --control-token-file});
 *     null sends none
 */
public record ControlPlaneConfig(List<String> coordinators, Duration heartbeatInterval, RecordSigning placementKey,
        TlsConfig tls, BearerToken token) {

    public ControlPlaneConfig {
        coordinators = List.copyOf(coordinators);
        if (coordinators.isEmpty()) {
            throw new IllegalArgumentException("at least one coordinator address is needed");
        }
        for (String address : coordinators) {
            requireHostPort(address);
        }
        requireNonNull(heartbeatInterval, "heartbeatInterval is null");
        if (heartbeatInterval.isNegative() || heartbeatInterval.isZero()) {
            throw new IllegalArgumentException("the heartbeat interval must be positive, got " + heartbeatInterval);
        }
    }

    private static void requireHostPort(String address) {
        int colon = address.lastIndexOf(':');
        boolean valid = colon > 0 && colon < address.length() - 1 && address.substring(colon + 1).chars().allMatch(Character::isDigit)
                && Integer.parseInt(address.substring(colon + 1)) <= 65535;
        if (!valid) {
            throw new IllegalArgumentException("coordinator address '" + ErrorText.excerpt(address)
                    + "' is not HOST:PORT (the coordinators' --control-port)");
        }
    }

    /** Plaintext, no token, unsigned records accepted, a heartbeat every second. */
    public static ControlPlaneConfig of(List<String> coordinators) {
        return new ControlPlaneConfig(coordinators, Duration.ofSeconds(1), null, null, null);
    }

    /** Acts only on records signed by the leader's key matching {@code key}; null accepts unsigned ones. */
    public ControlPlaneConfig withPlacementKey(RecordSigning key) {
        return new ControlPlaneConfig(coordinators, heartbeatInterval, key, tls, token);
    }

    public ControlPlaneConfig withHeartbeatInterval(Duration interval) {
        return new ControlPlaneConfig(coordinators, interval, placementKey, tls, token);
    }

    /** Reaches the coordinators over TLS with {@code newTls}'s CA and certificate; null for plaintext. */
    public ControlPlaneConfig withTls(TlsConfig newTls) {
        return new ControlPlaneConfig(coordinators, heartbeatInterval, placementKey, newTls, token);
    }

    /** Presents {@code newToken} on every control call; null for none. */
    public ControlPlaneConfig withToken(BearerToken newToken) {
        return new ControlPlaneConfig(coordinators, heartbeatInterval, placementKey, tls, newToken);
    }
}
