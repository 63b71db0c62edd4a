package dev.moecluster.core.model;

import com.google.gson.JsonArray;
import com.google.gson.JsonObject;
import dev.moecluster.core.tensor.Tensor;
import java.io.IOException;
import java.io.OutputStream;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/** Writes tensors as a safetensors file, or as shards with a {@code model.safetensors.index.json}. */
public final class SafetensorsWriter {
    private final Map<String, Tensor> tensors = new LinkedHashMap<>();

    public SafetensorsWriter put(String name, Tensor tensor) {
        if (tensors.putIfAbsent(name, tensor) != null) {
            throw new IllegalArgumentException("tensor " + name + " added twice");
        }
        return this;
    }

    /** Writes all tensors to one file. */
    public void write(Path file) throws IOException {
        writeFile(file, new ArrayList<>(tensors.keySet()));
    }

    /**
     * Writes {@code shards} files named {@code model-0000i-of-0000n.safetensors} plus the index, the
     * layout Hugging Face uses for large checkpoints.
     */
    public void writeSharded(Path dir, int shards) throws IOException {
        List<String> names = new ArrayList<>(tensors.keySet());
        JsonObject weightMap = new JsonObject();
        long total = 0;
        for (int s = 0; s < shards; s++) {
            List<String> part = new ArrayList<>();
            for (int i = s; i < names.size(); i += shards) {
                part.add(names.get(i));
            }
            String fileName = String.format("model-%05d-of-%05d.safetensors", s + 1, shards);
            writeFile(dir.resolve(fileName), part);
            for (String n : part) {
                weightMap.addProperty(n, fileName);
                total += tensors.get(n).data().byteSize();
            }
        }
        JsonObject index = new JsonObject();
        JsonObject meta = new JsonObject();
        meta.addProperty("total_size", total);
        index.add("metadata", meta);
        index.add("weight_map", weightMap);
        Files.writeString(dir.resolve("model.safetensors.index.json"), index.toString());
    }

    private void writeFile(Path file, List<String> names) throws IOException {
        JsonObject header = new JsonObject();
        JsonObject meta = new JsonObject();
        meta.addProperty("format", "pt");
        header.add("__metadata__", meta);
        long offset = 0;
        for (String name : names) {
            Tensor t = tensors.get(name);
            JsonObject o = new JsonObject();
            o.addProperty("dtype", t.dtype().safetensorsName());
            JsonArray shape = new JsonArray();
            for (long d : t.shape()) {
                shape.add(d);
            }
            o.add("shape", shape);
            JsonArray offsets = new JsonArray();
            offsets.add(offset);
            offset += t.data().byteSize();
            offsets.add(offset);
            o.add("data_offsets", offsets);
            header.add(name, o);
        }
        byte[] json = header.toString().getBytes(StandardCharsets.UTF_8);
        int padded = (json.length + 7) / 8 * 8; // the format asks for 8-byte alignment of the data
        byte[] headerBytes = new byte[padded];
        java.util.Arrays.fill(headerBytes, (byte) ' ');
        System.arraycopy(json, 0, headerBytes, 0, json.length);
        try (OutputStream out = Files.newOutputStream(file)) {
            out.write(ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN).putLong(padded).array());
            out.write(headerBytes);
            for (String name : names) {
                out.write(tensors.get(name).data().toArray(ValueLayout.JAVA_BYTE));
            }
        }
    }
}
