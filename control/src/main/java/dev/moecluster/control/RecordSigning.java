package dev.moecluster.control;

import static java.util.Objects.requireNonNull;

import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.security.GeneralSecurityException;
import java.security.KeyFactory;
import java.security.MessageDigest;
import java.security.PrivateKey;
import java.security.PublicKey;
import java.security.Signature;
import java.security.spec.PKCS8EncodedKeySpec;
import java.security.spec.X509EncodedKeySpec;
import java.util.Base64;
import java.util.List;

/**
 * Ed25519 signatures on the control-plane records routers and workers act on (placement, assignments),
 * so a client that can write Hazelcast's maps cannot forge them. The leader signs with a private key
 * ({@code --signing-key}, PEM PKCS#8), routers and workers check with the public key
 * ({@code --placement-public-key}, PEM SubjectPublicKeyInfo). A signature covers the record's kind, its
 * map key (a worker's assignment cannot be replayed onto another worker) and its canonical JSON; it travels
 * in the record as a {@value #FIELD} field, which readers of the record ignore.
 */
public final class RecordSigning {
    /** The JSON field that carries the base64 signature. */
    public static final String FIELD = "signature";
    /** Record kinds a signature is bound to. */
    public static final String PLACEMENT = "placement";
    public static final String ASSIGNMENT = "assignment";
    public static final String ROLLOUT = "rollout";

    private final PrivateKey privateKey; // null when only checking
    private final PublicKey publicKey; // null when only signing: signing then checks by signing again

    private RecordSigning(PrivateKey privateKey, PublicKey publicKey) {
        this.privateKey = privateKey;
        this.publicKey = publicKey;
    }

    /**
     * The leader's signing key: an Ed25519 private key, PEM PKCS#8 ({@code openssl genpkey -algorithm ed25519}).
     *
     * @throws IllegalArgumentException naming the file when it is missing, unreadable or not such a key
     */
    public static RecordSigning signingKey(Path file) {
        byte[] der = pem(file, "PRIVATE KEY", "signing key");
        try {
            return new RecordSigning(KeyFactory.getInstance("Ed25519").generatePrivate(new PKCS8EncodedKeySpec(der)), null);
        } catch (GeneralSecurityException e) {
            throw new IllegalArgumentException("signing key file " + file + " is not an Ed25519 PKCS#8 private key: "
                    + e.getMessage(), e);
        }
    }

    /**
     * The key that checks the leader's signatures: an Ed25519 public key, PEM
     * ({@code openssl pkey -in signing.pem -pubout}).
     */
    public static RecordSigning publicKey(Path file) {
        byte[] der = pem(file, "PUBLIC KEY", "placement public key");
        try {
            return new RecordSigning(null, KeyFactory.getInstance("Ed25519").generatePublic(new X509EncodedKeySpec(der)));
        } catch (GeneralSecurityException e) {
            throw new IllegalArgumentException("placement public key file " + file + " is not an Ed25519 public key: "
                    + e.getMessage(), e);
        }
    }

    /** Whether this holds the private key (the leader) rather than only the public one. */
    public boolean canSign() {
        return privateKey != null;
    }

    /** The base64 signature of record {@code kind} under {@code key} with canonical JSON {@code canonical}. */
    public String sign(String kind, String key, String canonical) {
        if (privateKey == null) {
            throw new IllegalStateException("only a public key: cannot sign");
        }
        try {
            Signature s = Signature.getInstance("Ed25519");
            s.initSign(privateKey);
            s.update(message(kind, key, canonical));
            return Base64.getEncoder().encodeToString(s.sign());
        } catch (GeneralSecurityException e) {
            throw new IllegalStateException("Ed25519 signing failed", e);
        }
    }

    /** {@code json} (an object) with the signature of {@code canonical} added as {@value #FIELD}. */
    public String signed(String kind, String key, String canonical) {
        JsonObject root = JsonParser.parseString(canonical).getAsJsonObject();
        root.addProperty(FIELD, sign(kind, key, canonical));
        return root.toString();
    }

    /** Whether {@code signature} (base64, may be null) is the leader's signature of that record. */
    public boolean verifies(String kind, String key, String canonical, String signature) {
        if (signature == null) {
            return false;
        }
        byte[] presented;
        try {
            presented = Base64.getDecoder().decode(signature);
        } catch (IllegalArgumentException e) {
            return false;
        }
        if (publicKey == null) {
            // Ed25519 is deterministic: the leader checks a record by signing it again
            return MessageDigest.isEqual(Base64.getDecoder().decode(sign(kind, key, canonical)), presented);
        }
        try {
            Signature s = Signature.getInstance("Ed25519");
            s.initVerify(publicKey);
            s.update(message(kind, key, canonical));
            return s.verify(presented);
        } catch (GeneralSecurityException | IllegalArgumentException e) {
            return false;
        }
    }

    /** The {@value #FIELD} of a record's JSON, or null when it has none (or is not a JSON object). */
    public static String signatureIn(String json) {
        try {
            JsonObject root = JsonParser.parseString(json).getAsJsonObject();
            return root.has(FIELD) && root.get(FIELD).isJsonPrimitive() ? root.get(FIELD).getAsString() : null;
        } catch (RuntimeException e) {
            return null;
        }
    }

    private static byte[] message(String kind, String key, String canonical) {
        requireNonNull(kind, "kind is null");
        requireNonNull(key, "key is null");
        requireNonNull(canonical, "canonical is null");
        return ("moe.v1/" + kind + "\n" + key + "\n" + canonical).getBytes(StandardCharsets.UTF_8);
    }

    private static byte[] pem(Path file, String label, String what) {
        requireNonNull(file, "file is null");
        String text;
        try {
            text = Files.readString(file, StandardCharsets.ISO_8859_1);
        } catch (NoSuchFileException e) {
            throw new IllegalArgumentException(what + " file " + file + " does not exist", e);
        } catch (IOException e) {
            throw new IllegalArgumentException(what + " file " + file + " cannot be read: " + e.getMessage(), e);
        }
        List<String[]> blocks = TlsConfig.blocks(text);
        for (String[] b : blocks) {
            if (b[0].equals(label)) {
                try {
                    return Base64.getMimeDecoder().decode(b[1]);
                } catch (IllegalArgumentException e) {
                    throw new IllegalArgumentException(what + " file " + file + " holds malformed base64", e);
                }
            }
        }
        throw new IllegalArgumentException(what + " file " + file + " holds no PEM block -----BEGIN " + label + "-----");
    }

    @Override
    public String toString() {
        return privateKey != null ? "RecordSigning[signing key]" : "RecordSigning[public key]";
    }
}
