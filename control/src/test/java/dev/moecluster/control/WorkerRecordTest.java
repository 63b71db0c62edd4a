package dev.moecluster.control;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.util.Map;
import java.util.Set;
import org.junit.jupiter.api.Test;

class WorkerRecordTest {

    @Test
    void throughputSurvivesTheRegistrysJsonAndEveryWither() {
        WorkerThroughput t = new WorkerThroughput(4, 1_000, 256, 20_000, 15_000, 123_456, false);
        WorkerRecord r = new WorkerRecord("w", "127.0.0.1:1", "cpu", 1 << 20, WorkerState.ACTIVE, Map.of(0, Set.of(1)), 3,
                42, t);

        WorkerRecord back = WorkerRecord.fromJson(r.toJson());

        assertThat(back).isEqualTo(r);
        assertThat(back.withHeartbeat(43).withState(WorkerState.DRAINING).withHeld(Map.of(), 4).throughput())
                .isEqualTo(t);
        assertThat(back.planningRowsPerSecond()).isEqualTo(20_000);
    }

    @Test
    void aRecordWithoutThroughputReadsAsUnknownSpeed() {
        String older = "{\"id\":\"w\",\"address\":\"127.0.0.1:1\",\"backend\":\"cpu\",\"memoryBytes\":1,"
                + "\"state\":\"ACTIVE\",\"held\":{},\"heldEpoch\":0,\"heartbeatMillis\":5}";

        WorkerRecord r = WorkerRecord.fromJson(older);

        assertThat(r.throughput()).isNull();
        assertThat(r.planningRowsPerSecond()).isZero();
    }

    @Test
    void planningSpeedIsTheLargeBatchCalibrationElseTheSmallBatchOneAndNotTheLiveRate() {
        assertThat(new WorkerThroughput(4, 100, 256, 900, 0, 0, false).planningRowsPerSecond()).isEqualTo(900);
        assertThat(new WorkerThroughput(4, 100, 256, 0, 0, 0, false).planningRowsPerSecond()).isEqualTo(100);
        assertThat(new WorkerThroughput(4, 100, 256, 900, 500, 10_000, false).planningRowsPerSecond()).isEqualTo(900);
        assertThat(new WorkerThroughput(4, 100, 256, 900, 1_500, 10_000, false).planningRowsPerSecond()).isEqualTo(900);
        assertThat(WorkerThroughput.fixed(7_000).withLive(500, 10_000).planningRowsPerSecond()).isEqualTo(7_000);
        assertThat(WorkerThroughput.unknown().planningRowsPerSecond()).isZero();
        assertThatThrownBy(() -> new WorkerThroughput(4, -1, 256, 0, 0, 0, false))
                .isInstanceOf(IllegalArgumentException.class);
        assertThatThrownBy(() -> WorkerThroughput.fixed(Double.NaN)).isInstanceOf(IllegalArgumentException.class);
    }
}
