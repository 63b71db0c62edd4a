package dev.moecluster.core.model;

import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import dev.moecluster.core.tensor.DType;
import dev.moecluster.core.tensor.Tensor;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.Collections;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.stream.Stream;

/**
 * The safetensors files of a Hugging Face model directory, memory-mapped. Only the header of each
 * file is read at open; tensor bytes are paged in when a tensor is used, so a worker that touches
 * only its experts reads only their pages. Handles sharded checkpoints through
 * {@code model.safetensors.index.json}.
 */
public final class Checkpoint implements AutoCloseable {
    private static final String INDEX = "model.safetensors.index.json";

    private final Path directory;
    private final Arena arena = Arena.ofShared();
    private final Map<String, Entry> entries;
    private final Map<Path, MemorySegment> mapped = new HashMap<>();

    private record Entry(Path file, DType dtype, long[] shape, long begin, long end, long dataStart) {}

    private Checkpoint(Path directory) throws IOException {
        this.directory = directory;
        this.entries = new TreeMap<>();
        try {
            for (Path file : shardFiles(directory)) {
                readHeader(file);
            }
            if (entries.isEmpty()) {
                throw new IOException("no tensors found in " + directory + " (expected *.safetensors files)");
            }
        } catch (IOException | RuntimeException e) {
            arena.close(); // otherwise the files mapped so far stay mapped for the life of the process
            throw e;
        }
    }

    /** Opens the checkpoint in {@code directory}; fails with a clear message if it is not one. */
    public static Checkpoint open(Path directory) throws IOException {
        if (!Files.isDirectory(directory)) {
            throw new IOException("model directory " + directory + " does not exist");
        }
        return new Checkpoint(directory);
    }

    private static List<Path> shardFiles(Path dir) throws IOException {
        Path index = dir.resolve(INDEX);
        if (Files.exists(index)) {
            JsonObject map = JsonParser.parseString(Files.readString(index)).getAsJsonObject().getAsJsonObject("weight_map");
            if (map == null) {
                throw new IOException(index + " has no weight_map");
            }
            return map.entrySet().stream().map(e -> e.getValue().getAsString()).distinct().sorted().map(dir::resolve).toList();
        }
        try (Stream<Path> files = Files.list(dir)) {
            return files.filter(p -> p.getFileName().toString().endsWith(".safetensors")).sorted().toList();
        }
    }

    private void readHeader(Path file) throws IOException {
        if (!Files.exists(file)) {
            throw new IOException("checkpoint shard " + file + " named in the index does not exist");
        }
        MemorySegment seg = map(file);
        if (seg.byteSize() < 8) {
            throw new IOException(file + " is too short to be a safetensors file");
        }
        long headerLen = seg.get(ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN), 0);
        if (headerLen <= 0 || headerLen > 100_000_000 || 8 + headerLen > seg.byteSize()) {
            throw new IOException(file + " has an invalid safetensors header length " + headerLen);
        }
        byte[] header = seg.asSlice(8, headerLen).toArray(ValueLayout.JAVA_BYTE);
        long dataStart = 8 + headerLen;
        try {
            JsonObject json = JsonParser.parseString(new String(header, StandardCharsets.UTF_8)).getAsJsonObject();
            for (Map.Entry<String, JsonElement> e : json.entrySet()) {
                if (e.getKey().equals("__metadata__")) {
                    continue;
                }
                JsonObject t = e.getValue().getAsJsonObject();
                DType dtype = DType.fromSafetensors(t.get("dtype").getAsString());
                long[] shape = t.getAsJsonArray("shape").asList().stream().mapToLong(JsonElement::getAsLong).toArray();
                long begin = t.getAsJsonArray("data_offsets").get(0).getAsLong();
                long end = t.getAsJsonArray("data_offsets").get(1).getAsLong();
                if (begin < 0 || end - begin != Tensor.elementCount(shape) * dtype.byteSize()
                        || dataStart + end > seg.byteSize()) {
                    throw new IOException(file + ": tensor " + e.getKey() + " has inconsistent offsets");
                }
                entries.put(e.getKey(), new Entry(file, dtype, shape, begin, end, dataStart));
            }
        } catch (RuntimeException e) {
            // Gson and the dtype/shape checks throw unchecked exceptions that do not say which file is bad.
            throw new IOException(file + " has a malformed safetensors header: " + e.getMessage(), e);
        }
    }

    private synchronized MemorySegment map(Path file) throws IOException {
        MemorySegment seg = mapped.get(file);
        if (seg == null) {
            try (FileChannel ch = FileChannel.open(file, StandardOpenOption.READ)) {
                seg = ch.map(FileChannel.MapMode.READ_ONLY, 0, ch.size(), arena);
            }
            mapped.put(file, seg);
        }
        return seg;
    }

    public Path directory() {
        return directory;
    }

    public boolean contains(String name) {
        return entries.containsKey(name);
    }

    public Set<String> tensorNames() {
        return Collections.unmodifiableSet(entries.keySet());
    }

    /** The named tensor as a view over the mapped file; fails naming the tensor if it is absent. */
    public Tensor tensor(String name) {
        Entry e = entries.get(name);
        if (e == null) {
            throw new IllegalArgumentException("tensor " + name + " is not in the checkpoint at " + directory);
        }
        try {
            MemorySegment seg = map(e.file());
            return new Tensor(e.dtype(), e.shape(), seg.asSlice(e.dataStart() + e.begin(), e.end() - e.begin()));
        } catch (IOException ex) {
            throw new UncheckedIOException(ex);
        }
    }

    /**
     * The named tensor for a part of the model that runs unscaled (attention, gates, shared and dense
     * FFNs, embeddings): an FP8 one fails naming it, since only routed experts carry their scales.
     */
    public Tensor denseTensor(String name) {
        Tensor t = tensor(name);
        if (t.dtype() == DType.FP8_E4M3) {
            throw new IllegalArgumentException("tensor " + name + " in " + directory + " is FP8; only routed experts may be"
                    + " FP8 (as in Meta's Llama 4 FP8 release), the rest of the model must be bf16, f16 or f32");
        }
        return t;
    }

    /** The shape of a tensor, read from the header only. */
    public long[] shapeOf(String name) {
        Entry e = entries.get(name);
        if (e == null) {
            throw new IllegalArgumentException("tensor " + name + " is not in the checkpoint at " + directory);
        }
        return e.shape().clone();
    }

    @Override
    public void close() {
        arena.close();
    }
}
