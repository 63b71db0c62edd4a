package dev.moecluster.core.runner;

import com.google.gson.GsonBuilder;
import com.google.gson.JsonArray;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import dev.moecluster.core.model.Architecture;
import dev.moecluster.core.model.Checkpoint;
import dev.moecluster.core.model.ModelGenerator;
import dev.moecluster.core.model.SafetensorsWriter;
import dev.moecluster.core.tensor.DType;
import dev.moecluster.core.tensor.Tensor;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.lang.foreign.Arena;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Locale;
import java.util.SplittableRandom;
import java.util.function.Consumer;
import java.util.function.Predicate;

/**
 * Tiny generated models for the decoder tests: {@link ModelGenerator}'s models plus variants that
 * switch on what the plain tiny configs leave off (sliding window, tied embeddings, dense MLP
 * layers, bf16, Llama 4 NoPE layers with temperature tuning and a short chunk, the multimodal
 * {@code language_model.} layout). Deterministic, so transformers' logits for them can be stored
 * (see {@code core/src/test/python/transformers_golden.py}).
 */
final class TinyModels {
    /** Models with stored transformers logits. */
    enum Variant {
        MIXTRAL,
        MIXTRAL_SLIDING_WINDOW,
        MIXTRAL_TIED_EMBEDDINGS,
        QWEN3_MOE,
        QWEN3_MOE_BF16,
        QWEN3_MOE_DENSE_LAYER,
        QWEN2_MOE,
        QWEN2_MOE_DENSE_LAYER,
        LLAMA4,
        LLAMA4_NOPE_LAYERS;

        String dirName() {
            return name().toLowerCase(Locale.ROOT).replace('_', '-');
        }
    }

    private TinyModels() {}

    /** Writes {@code variant} into {@code dir} (created) and returns {@code dir}. */
    static Path write(Variant variant, Path dir) {
        try {
            return switch (variant) {
                case MIXTRAL -> generate(ModelGenerator.Spec.tiny(Architecture.MIXTRAL), dir);
                case MIXTRAL_SLIDING_WINDOW -> {
                    generate(ModelGenerator.Spec.tiny(Architecture.MIXTRAL), dir);
                    editConfig(dir, c -> c.addProperty("sliding_window", 5));
                    yield dir;
                }
                case MIXTRAL_TIED_EMBEDDINGS -> {
                    Path base = generate(ModelGenerator.Spec.tiny(Architecture.MIXTRAL), dir.resolve("base"));
                    rewrite(base, dir, name -> !name.equals("lm_head.weight"), "", null);
                    editConfig(dir, c -> c.addProperty("tie_word_embeddings", true));
                    yield dir;
                }
                case QWEN3_MOE -> generate(ModelGenerator.Spec.tiny(Architecture.QWEN3_MOE), dir);
                case QWEN3_MOE_BF16 -> generate(ModelGenerator.Spec.tiny(Architecture.QWEN3_MOE).withDtype(DType.BF16), dir);
                case QWEN3_MOE_DENSE_LAYER -> {
                    // Three layers, the middle one dense through mlp_only_layers.
                    var spec = ModelGenerator.Spec.tiny(Architecture.QWEN3_MOE).withSize(3, 64, 128, 8);
                    Path base = generate(spec, dir.resolve("base"));
                    rewrite(base, dir, name -> !name.startsWith("model.layers.1.mlp."), "",
                            denseMlp("model.layers.1.mlp.", 64, 256, DType.F32));
                    editConfig(dir, c -> {
                        JsonArray only = new JsonArray();
                        only.add(1);
                        c.add("mlp_only_layers", only);
                    });
                    yield dir;
                }
                case QWEN2_MOE -> generate(ModelGenerator.Spec.tiny(Architecture.QWEN2_MOE), dir);
                case QWEN2_MOE_DENSE_LAYER -> {
                    // decoder_sparse_step 2: layer 0 dense, layer 1 sparse.
                    Path base = generate(ModelGenerator.Spec.tiny(Architecture.QWEN2_MOE), dir.resolve("base"));
                    rewrite(base, dir, name -> !name.startsWith("model.layers.0.mlp."), "",
                            denseMlp("model.layers.0.mlp.", 64, 256, DType.F32));
                    editConfig(dir, c -> c.addProperty("decoder_sparse_step", 2));
                    yield dir;
                }
                case LLAMA4 -> generate(ModelGenerator.Spec.tiny(Architecture.LLAMA4), dir);
                case LLAMA4_NOPE_LAYERS -> {
                    // Four layers: 0-2 RoPE + chunked, 3 NoPE with temperature tuning that already
                    // scales at these positions; dense layers 0 and 2, MoE layers 1 and 3.
                    generate(ModelGenerator.Spec.tiny(Architecture.LLAMA4).withSize(4, 64, 128, 8), dir);
                    editConfig(dir, c -> {
                        c.addProperty("attention_chunk_size", 8);
                        c.addProperty("floor_scale", 4);
                        c.addProperty("attn_scale", 0.5);
                    });
                    yield dir;
                }
            };
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    static Path generate(ModelGenerator.Spec spec, Path dir) throws IOException {
        ModelGenerator.generate(spec, dir);
        return dir;
    }

    /** The text-only Llama 4 model in {@code textDir} re-laid as {@code Llama4ForConditionalGeneration}. */
    static Path llama4Multimodal(Path textDir, Path dir) throws IOException {
        rewrite(textDir, dir, name -> true, "language_model.", null);
        JsonObject text = readConfig(textDir);
        JsonObject outer = new JsonObject();
        JsonArray archs = new JsonArray();
        archs.add("Llama4ForConditionalGeneration");
        outer.add("architectures", archs);
        outer.addProperty("model_type", "llama4");
        text.remove("architectures");
        outer.add("text_config", text);
        outer.addProperty("torch_dtype", text.get("torch_dtype").getAsString());
        writeConfig(dir, outer);
        return dir;
    }

    /** The tied model in {@code tiedDir} with its embedding matrix stored again as an untied {@code lm_head.weight}. */
    static Path untiedCopy(Path tiedDir, Path dir) throws IOException {
        try (Checkpoint tied = Checkpoint.open(tiedDir)) {
            Tensor embedding = tied.tensor("model.embed_tokens.weight");
            rewrite(tiedDir, dir, name -> true, "", (writer, arena) -> writer.put("lm_head.weight", embedding));
        }
        editConfig(dir, c -> c.addProperty("tie_word_embeddings", false));
        return dir;
    }

    /** Rewrites {@code dir}'s config.json through {@code edit}. */
    static void editConfig(Path dir, Consumer<JsonObject> edit) throws IOException {
        JsonObject c = readConfig(dir);
        edit.accept(c);
        writeConfig(dir, c);
    }

    static JsonObject readConfig(Path dir) throws IOException {
        return JsonParser.parseString(Files.readString(dir.resolve("config.json"))).getAsJsonObject();
    }

    private static void writeConfig(Path dir, JsonObject c) throws IOException {
        Files.writeString(dir.resolve("config.json"),
                new GsonBuilder().setPrettyPrinting().disableHtmlEscaping().create().toJson(c));
    }

    /** Extra tensors for a rewritten checkpoint. */
    private interface Extra {
        void addTo(SafetensorsWriter writer, Arena arena);
    }

    /** A dense SwiGLU MLP under {@code prefix}, Gaussian with std {@code 1/sqrt(fan_in)}, seeded. */
    private static Extra denseMlp(String prefix, int hidden, int inter, DType dtype) {
        return (writer, arena) -> {
            SplittableRandom random = new SplittableRandom(7);
            writer.put(prefix + "gate_proj.weight", gaussian(arena, random, dtype, hidden, inter, hidden));
            writer.put(prefix + "up_proj.weight", gaussian(arena, random, dtype, hidden, inter, hidden));
            writer.put(prefix + "down_proj.weight", gaussian(arena, random, dtype, inter, hidden, inter));
        };
    }

    private static Tensor gaussian(Arena arena, SplittableRandom random, DType dtype, int fanIn, int rows, int cols) {
        float[] v = new float[rows * cols];
        double std = 1 / Math.sqrt(fanIn);
        for (int i = 0; i < v.length; i++) {
            v[i] = (float) (random.nextGaussian() * std);
        }
        return Tensor.of(arena, dtype, new long[] {rows, cols}, v);
    }

    /**
     * Copies the checkpoint in {@code from} to {@code to}, keeping tensors that pass {@code keep},
     * prefixing every name, adding {@code extra}; config.json and tokenizer.json are copied.
     */
    private static void rewrite(Path from, Path to, Predicate<String> keep, String prefix, Extra extra)
            throws IOException {
        Files.createDirectories(to);
        try (Checkpoint checkpoint = Checkpoint.open(from); Arena arena = Arena.ofConfined()) {
            SafetensorsWriter writer = new SafetensorsWriter();
            for (String name : checkpoint.tensorNames()) {
                if (keep.test(name)) {
                    writer.put(prefix + name, checkpoint.tensor(name));
                }
            }
            if (extra != null) {
                extra.addTo(writer, arena);
            }
            writer.write(to.resolve("model.safetensors"));
        }
        Files.copy(from.resolve("config.json"), to.resolve("config.json"));
        Files.copy(from.resolve("tokenizer.json"), to.resolve("tokenizer.json"));
    }

    /** The prompt the stored logits were computed for: 24 tokens, past the Llama 4 chunks of 8 and 16. */
    static int[] prompt(int vocab) {
        int[] p = new int[24];
        for (int i = 0; i < p.length; i++) {
            p[i] = (i * 37 + 5) % vocab;
        }
        return p;
    }

    /** Writes every variant into {@code args[0]/<variant>}, for the golden-logit script. */
    public static void main(String[] args) {
        Path root = Path.of(args[0]);
        for (Variant v : Variant.values()) {
            write(v, root.resolve(v.dirName()));
        }
    }
}
