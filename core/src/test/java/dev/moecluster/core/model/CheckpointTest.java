package dev.moecluster.core.model;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.assertj.core.api.Assumptions.assumeThat;

import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import dev.moecluster.core.tensor.DType;
import dev.moecluster.core.tensor.Tensor;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class CheckpointTest {

    @TempDir
    Path dir;

    private static float[] iota(int n, float start) {
        float[] v = new float[n];
        for (int i = 0; i < n; i++) {
            v[i] = start + i;
        }
        return v;
    }

    private static SafetensorsWriter threeTensors(Arena arena) {
        return new SafetensorsWriter()
                .put("a.weight", Tensor.of(arena, DType.F32, new long[] {2, 3}, iota(6, 0)))
                .put("b.weight", Tensor.of(arena, DType.BF16, new long[] {4}, iota(4, 10)))
                .put("c.bias", Tensor.of(arena, DType.F16, new long[] {1, 1, 3}, iota(3, -1)));
    }

    /** A safetensors file built byte by byte, without {@link SafetensorsWriter}. */
    private static void writeRaw(Path file, String header, byte[] data) throws IOException {
        byte[] h = header.getBytes(StandardCharsets.UTF_8);
        ByteBuffer b = ByteBuffer.allocate(8 + h.length + data.length).order(ByteOrder.LITTLE_ENDIAN);
        b.putLong(h.length).put(h).put(data);
        Files.write(file, b.array());
    }

    @Test
    void singleFileRoundTripsNamesShapesDtypesAndValues() throws IOException {
        try (Arena arena = Arena.ofConfined()) {
            threeTensors(arena).write(dir.resolve("model.safetensors"));
        }
        try (Checkpoint c = Checkpoint.open(dir)) {
            assertThat(c.directory()).isEqualTo(dir);
            assertThat(c.tensorNames()).containsExactly("a.weight", "b.weight", "c.bias");
            assertThat(c.contains("a.weight")).isTrue();
            assertThat(c.contains("z")).isFalse();
            Tensor a = c.tensor("a.weight");
            assertThat(a.dtype()).isEqualTo(DType.F32);
            assertThat(a.shape()).containsExactly(2, 3);
            assertThat(a.toFloatArray()).containsExactly(0, 1, 2, 3, 4, 5);
            Tensor b = c.tensor("b.weight");
            assertThat(b.dtype()).isEqualTo(DType.BF16);
            assertThat(b.toFloatArray()).containsExactly(10, 11, 12, 13);
            Tensor bias = c.tensor("c.bias");
            assertThat(bias.dtype()).isEqualTo(DType.F16);
            assertThat(bias.shape()).containsExactly(1, 1, 3);
            assertThat(bias.toFloatArray()).containsExactly(-1, 0, 1);
            assertThat(c.shapeOf("a.weight")).containsExactly(2, 3);
        }
    }

    @Test
    void writerProducesAnAlignedSafetensorsHeader() throws IOException {
        Path file = dir.resolve("model.safetensors");
        try (Arena arena = Arena.ofConfined()) {
            threeTensors(arena).write(file);
        }
        byte[] bytes = Files.readAllBytes(file);
        long headerLen = ByteBuffer.wrap(bytes, 0, 8).order(ByteOrder.LITTLE_ENDIAN).getLong();
        assertThat(headerLen % 8).isZero();
        JsonObject header = JsonParser.parseString(new String(bytes, 8, (int) headerLen, StandardCharsets.UTF_8))
                .getAsJsonObject();
        assertThat(header.getAsJsonObject("__metadata__").get("format").getAsString()).isEqualTo("pt");
        JsonObject a = header.getAsJsonObject("a.weight");
        assertThat(a.get("dtype").getAsString()).isEqualTo("F32");
        assertThat(a.get("shape").toString()).isEqualTo("[2,3]");
        assertThat(a.get("data_offsets").toString()).isEqualTo("[0,24]");
        assertThat(header.getAsJsonObject("b.weight").get("data_offsets").toString()).isEqualTo("[24,32]");
        assertThat(header.getAsJsonObject("c.bias").get("dtype").getAsString()).isEqualTo("F16");
        assertThat(header.getAsJsonObject("c.bias").get("data_offsets").toString()).isEqualTo("[32,38]");
        assertThat(bytes.length).isEqualTo(8 + headerLen + 38);
        // The data block is little-endian: a.weight[1] = 1.0f = 0x3f800000.
        int start = (int) (8 + headerLen);
        assertThat(ByteBuffer.wrap(bytes, start + 4, 4).order(ByteOrder.LITTLE_ENDIAN).getFloat()).isEqualTo(1f);
    }

    @Test
    void readsAHandWrittenFileWithTensorsOutOfOffsetOrder() throws IOException {
        // Unpadded header, no metadata, tensors listed in a different order from their data.
        String header = "{\"y\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]},"
                + "\"x\":{\"dtype\":\"BF16\",\"shape\":[2,2],\"data_offsets\":[0,8]}}";
        ByteBuffer data = ByteBuffer.allocate(16).order(ByteOrder.LITTLE_ENDIAN);
        data.putShort((short) 0x3f80).putShort((short) 0x4000).putShort((short) 0xbf80).putShort((short) 0x4040);
        data.putFloat(0.25f).putFloat(-8f);
        writeRaw(dir.resolve("weights.safetensors"), header, data.array());
        try (Checkpoint c = Checkpoint.open(dir)) {
            assertThat(c.tensorNames()).containsExactlyInAnyOrder("x", "y");
            assertThat(c.tensor("x").toFloatArray()).containsExactly(1, 2, -1, 3);
            assertThat(c.tensor("y").toFloatArray()).containsExactly(0.25f, -8f);
        }
    }

    @Test
    void shardedCheckpointIsReadThroughTheIndex() throws IOException {
        try (Arena arena = Arena.ofConfined()) {
            threeTensors(arena).writeSharded(dir, 2);
        }
        try (Stream<Path> files = Files.list(dir)) {
            assertThat(files.map(p -> p.getFileName().toString())).containsExactlyInAnyOrder(
                    "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
                    "model.safetensors.index.json");
        }
        JsonObject index = JsonParser.parseString(Files.readString(dir.resolve("model.safetensors.index.json")))
                .getAsJsonObject();
        JsonObject map = index.getAsJsonObject("weight_map");
        assertThat(map.keySet()).containsExactlyInAnyOrder("a.weight", "b.weight", "c.bias");
        assertThat(map.get("a.weight").getAsString()).isEqualTo("model-00001-of-00002.safetensors");
        assertThat(map.get("b.weight").getAsString()).isEqualTo("model-00002-of-00002.safetensors");
        assertThat(map.get("c.bias").getAsString()).isEqualTo("model-00001-of-00002.safetensors");
        assertThat(index.getAsJsonObject("metadata").get("total_size").getAsLong()).isEqualTo(24 + 8 + 6);
        try (Checkpoint c = Checkpoint.open(dir)) {
            assertThat(c.tensorNames()).containsExactly("a.weight", "b.weight", "c.bias");
            assertThat(c.tensor("a.weight").toFloatArray()).containsExactly(0, 1, 2, 3, 4, 5);
            assertThat(c.tensor("b.weight").toFloatArray()).containsExactly(10, 11, 12, 13);
            assertThat(c.tensor("c.bias").toFloatArray()).containsExactly(-1, 0, 1);
        }
    }

    @Test
    void theIndexDecidesWhichShardsAreRead() throws IOException {
        try (Arena arena = Arena.ofConfined()) {
            threeTensors(arena).writeSharded(dir, 3);
            // A stray file the index does not name is ignored.
            new SafetensorsWriter().put("stray", Tensor.of(arena, DType.F32, new long[] {1}, new float[] {1}))
                    .write(dir.resolve("stray.safetensors"));
        }
        try (Checkpoint c = Checkpoint.open(dir)) {
            assertThat(c.tensorNames()).containsExactly("a.weight", "b.weight", "c.bias");
        }
    }

    @Test
    void anIndexNamingAMissingShardFailsNamingTheShard() throws IOException {
        try (Arena arena = Arena.ofConfined()) {
            threeTensors(arena).writeSharded(dir, 2);
        }
        Files.delete(dir.resolve("model-00002-of-00002.safetensors"));
        assertThatThrownBy(() -> Checkpoint.open(dir))
                .isInstanceOf(IOException.class)
                .hasMessageContaining("model-00002-of-00002.safetensors")
                .hasMessageContaining("does not exist");
    }

    @Test
    void anIndexWithoutAWeightMapFails() throws IOException {
        Files.writeString(dir.resolve("model.safetensors.index.json"), "{\"metadata\":{}}");
        assertThatThrownBy(() -> Checkpoint.open(dir))
                .isInstanceOf(IOException.class)
                .hasMessageContaining("no weight_map");
    }

    @Test
    void aMissingTensorFailsNamingTheTensorAndTheDirectory() throws IOException {
        try (Arena arena = Arena.ofConfined()) {
            threeTensors(arena).write(dir.resolve("model.safetensors"));
        }
        try (Checkpoint c = Checkpoint.open(dir)) {
            assertThatThrownBy(() -> c.tensor("model.layers.0.mlp.gate.weight"))
                    .isInstanceOf(IllegalArgumentException.class)
                    .hasMessageContaining("model.layers.0.mlp.gate.weight")
                    .hasMessageContaining(dir.toString());
            assertThatThrownBy(() -> c.shapeOf("nope"))
                    .isInstanceOf(IllegalArgumentException.class)
                    .hasMessageContaining("nope");
        }
    }

    @Test
    void tensorNamesCannotBeModifiedThroughTheView() throws IOException {
        try (Arena arena = Arena.ofConfined()) {
            threeTensors(arena).write(dir.resolve("model.safetensors"));
        }
        try (Checkpoint c = Checkpoint.open(dir)) {
            assertThatThrownBy(() -> c.tensorNames().remove("a.weight"))
                    .isInstanceOf(UnsupportedOperationException.class);
            assertThat(c.contains("a.weight")).isTrue();
        }
    }

    @Test
    void aMissingDirectoryFails() {
        assertThatThrownBy(() -> Checkpoint.open(dir.resolve("absent")))
                .isInstanceOf(IOException.class)
                .hasMessageContaining("does not exist");
    }

    @Test
    void aDirectoryWithoutSafetensorsFails() throws IOException {
        Files.writeString(dir.resolve("config.json"), "{}");
        assertThatThrownBy(() -> Checkpoint.open(dir))
                .isInstanceOf(IOException.class)
                .hasMessageContaining("no tensors found");
    }

    @Test
    void aFileTooShortForAHeaderFails() throws IOException {
        Files.write(dir.resolve("model.safetensors"), new byte[] {1, 2, 3});
        assertThatThrownBy(() -> Checkpoint.open(dir))
                .isInstanceOf(IOException.class)
                .hasMessageContaining("too short");
    }

    @Test
    void aHeaderLengthBeyondTheFileFails() throws IOException {
        byte[] bytes = ByteBuffer.allocate(16).order(ByteOrder.LITTLE_ENDIAN).putLong(1000).array();
        Files.write(dir.resolve("model.safetensors"), bytes);
        assertThatThrownBy(() -> Checkpoint.open(dir))
                .isInstanceOf(IOException.class)
                .hasMessageContaining("invalid safetensors header length 1000");
        byte[] negative = ByteBuffer.allocate(16).order(ByteOrder.LITTLE_ENDIAN).putLong(-5).array();
        Files.write(dir.resolve("model.safetensors"), negative);
        assertThatThrownBy(() -> Checkpoint.open(dir))
                .isInstanceOf(IOException.class)
                .hasMessageContaining("invalid safetensors header length -5");
    }

    @Test
    void offsetsThatDisagreeWithShapeOrFileSizeFail() throws IOException {
        // [2] F32 needs 8 bytes, not 4.
        writeRaw(dir.resolve("model.safetensors"),
                "{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", new byte[8]);
        assertThatThrownBy(() -> Checkpoint.open(dir))
                .isInstanceOf(IOException.class)
                .hasMessageContaining("tensor x has inconsistent offsets");
        // Offsets run past the end of the file.
        writeRaw(dir.resolve("model.safetensors"),
                "{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", new byte[4]);
        assertThatThrownBy(() -> Checkpoint.open(dir))
                .isInstanceOf(IOException.class)
                .hasMessageContaining("inconsistent offsets");
        // A negative start would read the header as tensor data.
        writeRaw(dir.resolve("model.safetensors"),
                "{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[-4,4]}}", new byte[8]);
        assertThatThrownBy(() -> Checkpoint.open(dir))
                .isInstanceOf(IOException.class)
                .hasMessageContaining("inconsistent offsets");
    }

    @Test
    void aHeaderThatIsNotJsonFailsNamingTheFile() throws IOException {
        writeRaw(dir.resolve("model.safetensors"), "not json at all {", new byte[0]);
        assertThatThrownBy(() -> Checkpoint.open(dir))
                .isInstanceOf(IOException.class)
                .hasMessageContaining("model.safetensors");
    }

    @Test
    void anUnsupportedDtypeFailsNamingTheFileAndDtype() throws IOException {
        writeRaw(dir.resolve("model.safetensors"),
                "{\"ids\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[0,8]}}", new byte[8]);
        assertThatThrownBy(() -> Checkpoint.open(dir))
                .isInstanceOf(IOException.class)
                .hasMessageContaining("model.safetensors")
                .hasMessageContaining("I64");
    }

    @Test
    void aTensorEntryWithoutOffsetsFailsNamingTheFile() throws IOException {
        writeRaw(dir.resolve("model.safetensors"), "{\"x\":{\"dtype\":\"F32\",\"shape\":[1]}}", new byte[4]);
        assertThatThrownBy(() -> Checkpoint.open(dir))
                .isInstanceOf(IOException.class)
                .hasMessageContaining("model.safetensors");
    }

    @Test
    void aFailedOpenUnmapsWhatItMapped() throws IOException {
        Path maps = Path.of("/proc/self/maps");
        assumeThat(Files.isReadable(maps)).as("needs Linux /proc").isTrue();
        try (Arena arena = Arena.ofConfined()) {
            threeTensors(arena).write(dir.resolve("a-good.safetensors"));
        }
        writeRaw(dir.resolve("b-bad.safetensors"), "{", new byte[0]);
        assertThatThrownBy(() -> Checkpoint.open(dir)).isInstanceOf(IOException.class);
        assertThat(Files.readString(maps)).doesNotContain(dir.resolve("a-good.safetensors").toString());
    }

    @Test
    void tensorsAreUnusableAfterClose() throws IOException {
        try (Arena arena = Arena.ofConfined()) {
            threeTensors(arena).write(dir.resolve("model.safetensors"));
        }
        Checkpoint c = Checkpoint.open(dir);
        Tensor a = c.tensor("a.weight");
        c.close();
        assertThatThrownBy(() -> a.getFloat(0)).isInstanceOf(IllegalStateException.class);
    }

    @Test
    void writerRejectsDuplicateNames() {
        try (Arena arena = Arena.ofConfined()) {
            Tensor t = Tensor.of(arena, DType.F32, new long[] {1}, new float[] {1});
            SafetensorsWriter w = new SafetensorsWriter().put("x", t);
            assertThatThrownBy(() -> w.put("x", t))
                    .isInstanceOf(IllegalArgumentException.class)
                    .hasMessageContaining("x added twice");
        }
    }
}
