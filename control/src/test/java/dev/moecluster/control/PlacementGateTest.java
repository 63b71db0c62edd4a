package dev.moecluster.control;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.moecluster.control.PlacementGate.Rejection;
import dev.moecluster.core.placement.ExpertPlacement;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.KeyPair;
import java.security.KeyPairGenerator;
import java.util.Base64;
import java.util.List;
import java.util.Map;
import java.util.function.Function;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Which placement records a router acts on: signatures, epochs, the model's shape, the registry. */
class PlacementGateTest {
    private static final List<Integer> LAYERS = List.of(0, 1);
    private static final List<String> WORKERS = List.of("10.0.0.1:50061", "10.0.0.2:50061");
    private static final Function<String, WorkerRecord> REGISTRY = address -> WORKERS.contains(address)
            ? new WorkerRecord("w", address, "cpu", 1, WorkerState.ACTIVE, Map.of(), 0, 0) : null;

    @TempDir
    Path dir;
    RecordSigning leader;
    RecordSigning routers;

    @BeforeEach
    void keys() throws Exception {
        KeyPair pair = KeyPairGenerator.getInstance("Ed25519").generateKeyPair();
        leader = RecordSigning.signingKey(pem(dir.resolve("signing.pem"), "PRIVATE KEY", pair.getPrivate().getEncoded()));
        routers = RecordSigning.publicKey(pem(dir.resolve("public.pem"), "PUBLIC KEY", pair.getPublic().getEncoded()));
    }

    static Path pem(Path file, String label, byte[] der) throws Exception {
        return Files.writeString(file, "-----BEGIN " + label + "-----\n" + Base64.getMimeEncoder().encodeToString(der)
                + "\n-----END " + label + "-----\n");
    }

    private static ExpertPlacement placement(long epoch, List<String> workers) {
        ExpertPlacement p = ExpertPlacement.roundRobin(workers, LAYERS, 4, 1);
        return new ExpertPlacement(epoch, p.workers(), p.layers());
    }

    private String signed(ExpertPlacement p) {
        return leader.signed(RecordSigning.PLACEMENT, ControlMaps.CURRENT, p.toJson());
    }

    @Test
    void aSignedNextEpochIsAcceptedAndAnyNewerSignedOneAfterAGap() {
        PlacementGate gate = new PlacementGate(routers, LAYERS, 4);
        assertThat(gate.check(signed(placement(1, WORKERS)), 0, REGISTRY).placement().epoch()).isEqualTo(1);
        assertThat(gate.check(signed(placement(8, WORKERS)), 7, REGISTRY).accepted()).isTrue();
        assertThat(gate.check(signed(placement(900_000, WORKERS)), 7, REGISTRY).accepted()).isTrue();
        // the one in use, read again by the heartbeat: neither news nor a rejection
        PlacementGate.Verdict same = gate.check(signed(placement(7, WORKERS)), 7, REGISTRY);
        assertThat(same.accepted()).isFalse();
        assertThat(same.rejection()).isNull();
    }

    @Test
    void forgedUnsignedReplayedAndMisSignedRecordsAreRejected() {
        PlacementGate gate = new PlacementGate(routers, LAYERS, 4);
        ExpertPlacement next = placement(8, WORKERS);
        assertThat(gate.check(next.toJson(), 7, REGISTRY).rejection()).isEqualTo(Rejection.UNSIGNED);
        // a valid signature of another record, moved onto this one
        String moved = signed(placement(6, WORKERS)).replace("\"epoch\":6", "\"epoch\":8");
        assertThat(gate.check(moved, 7, REGISTRY).rejection()).isEqualTo(Rejection.BAD_SIGNATURE);
        assertThat(gate.check(signed(placement(5, WORKERS)), 7, REGISTRY).rejection()).isEqualTo(Rejection.STALE);
        assertThat(gate.check(signed(placement(Long.MAX_VALUE, WORKERS)), 7, REGISTRY).rejection())
                .as("even the leader's own key cannot publish an absurd epoch").isEqualTo(Rejection.ABSURD_EPOCH);
        assertThat(gate.check("{\"epoch\": 8, \"workers\": 3}", 7, REGISTRY).rejection()).isEqualTo(Rejection.MALFORMED);
        // a signature made for another kind of record (an assignment) does not pass as a placement's
        String asAssignment = leader.signed(RecordSigning.ASSIGNMENT, ControlMaps.CURRENT, next.toJson());
        assertThat(gate.check(asAssignment, 7, REGISTRY).rejection()).isEqualTo(Rejection.BAD_SIGNATURE);
    }

    @Test
    void shapeAndRegistryAreCheckedEvenForSignedRecords() {
        PlacementGate gate = new PlacementGate(routers, LAYERS, 4);
        ExpertPlacement threeLayers = new ExpertPlacement(8, WORKERS, Map.of(0, placement(8, WORKERS).layers().get(0),
                1, placement(8, WORKERS).layers().get(1), 2, placement(8, WORKERS).layers().get(1)));
        assertThat(gate.check(signed(threeLayers), 7, REGISTRY).message()).contains("are not the model's MoE layers [0, 1]");
        PlacementGate wider = new PlacementGate(routers, LAYERS, 6);
        assertThat(wider.check(signed(placement(8, WORKERS)), 7, REGISTRY).message()).contains("places 4 experts, the model has 6");
        PlacementGate.Verdict stranger = gate.check(signed(placement(8, List.of("10.0.0.1:50061", "6.6.6.6:1"))), 7, REGISTRY);
        assertThat(stranger.rejection()).isEqualTo(Rejection.WORKER_NOT_ACTIVE);
        assertThat(stranger.message()).contains("6.6.6.6:1, which is not registered");
        Function<String, WorkerRecord> dead = a -> REGISTRY.apply(a).withState(WorkerState.DEAD);
        assertThat(gate.check(signed(placement(8, WORKERS)), 7, dead).message()).contains("which is DEAD");
    }

    @Test
    void withoutAKeyEpochsAreBoundedSoAForgedMaxValueCannotWin() {
        PlacementGate gate = new PlacementGate(null, LAYERS, 4);
        assertThat(gate.check(placement(8, WORKERS).toJson(), 7, REGISTRY).accepted()).isTrue();
        assertThat(gate.check(placement(Long.MAX_VALUE, WORKERS).toJson(), 7, REGISTRY).rejection()).isEqualTo(Rejection.ABSURD_EPOCH);
        assertThat(gate.check(placement(Long.MAX_VALUE, WORKERS).toJson(), 0, REGISTRY).rejection()).isEqualTo(Rejection.ABSURD_EPOCH);
        assertThat(gate.check(placement(7 + PlacementGate.MAX_UNSIGNED_STEP + 1, WORKERS).toJson(), 7, REGISTRY).rejection())
                .isEqualTo(Rejection.EPOCH_JUMP);
        assertThat(gate.check(placement(0, WORKERS).toJson(), 0, REGISTRY).rejection()).isEqualTo(Rejection.ABSURD_EPOCH);
    }

    @Test
    void keysAreReadFromPemFilesAndBadOnesAreNamed() throws Exception {
        assertThat(leader.canSign()).isTrue();
        assertThat(routers.canSign()).isFalse();
        // the leader checks records by signing them again (Ed25519 is deterministic)
        String record = signed(placement(3, WORKERS));
        assertThat(leader.verifies(RecordSigning.PLACEMENT, ControlMaps.CURRENT, placement(3, WORKERS).toJson(),
                RecordSigning.signatureIn(record))).isTrue();
        assertThat(leader.verifies(RecordSigning.PLACEMENT, ControlMaps.CURRENT, placement(4, WORKERS).toJson(),
                RecordSigning.signatureIn(record))).isFalse();
        Path rsa = pem(dir.resolve("rsa.pem"), "PRIVATE KEY",
                KeyPairGenerator.getInstance("RSA").generateKeyPair().getPrivate().getEncoded());
        assertThatThrownBy(() -> RecordSigning.signingKey(rsa)).hasMessageContaining("is not an Ed25519 PKCS#8 private key");
        assertThatThrownBy(() -> RecordSigning.publicKey(dir.resolve("absent.pem"))).hasMessageContaining("does not exist");
        Path pub = dir.resolve("public.pem");
        assertThatThrownBy(() -> RecordSigning.signingKey(pub)).hasMessageContaining("holds no PEM block -----BEGIN PRIVATE KEY-----");
    }
}
