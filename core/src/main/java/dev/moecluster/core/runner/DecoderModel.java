package dev.moecluster.core.runner;

import static java.util.Objects.requireNonNull;

import dev.moecluster.core.kernel.Gemm;
import dev.moecluster.core.model.Architecture;
import dev.moecluster.core.model.Checkpoint;
import dev.moecluster.core.model.ModelConfig;
import dev.moecluster.core.moe.ExpertWeights;
import dev.moecluster.core.moe.ReferenceMoeBlock;
import dev.moecluster.core.tensor.DType;
import dev.moecluster.core.tensor.FloatMatrix;
import dev.moecluster.core.tensor.Tensor;
import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Set;

/**
 * A decoder-only MoE language model (Mixtral, Qwen2-MoE, Qwen3-MoE, Llama 4 text) as transformers
 * runs it, computed in f32 over weights used as stored: token embedding, per layer
 * {@code x += attention(input_norm(x)); x += ffn(post_attention_norm(x))} where the FFN is a dense
 * SwiGLU MLP or, on MoE layers, {@link MoeLayers}; final norm and LM head. Everything except the
 * routed experts lives here, which is what the router holds.
 *
 * <p>A forward step takes new tokens of one or many sequences, each with its {@link KvCache} (paged,
 * f32 or bf16), and runs every projection, MLP and MoE call over all rows of the step at once, so
 * batched decode and chunked prefill can share a step. A step that fails leaves every cache as it was.
 */
public final class DecoderModel implements AutoCloseable {
    private final ModelConfig config;
    private final DecoderConfig decoder;
    private final MoeLayers moe;
    private final Tensor embedding;
    private final Tensor lmHead;
    private final float[] finalNorm;
    private final List<Layer> layers;
    private final RotaryEmbedding rope;
    private final List<AutoCloseable> owned;

    /** One decoder layer's non-expert weights; {@code mlp} is null on MoE layers. */
    private record Layer(float[] inputNorm, float[] postAttentionNorm, SelfAttention attention, ExpertWeights mlp) {}

    private DecoderModel(ModelConfig config, Checkpoint checkpoint, MoeLayers moe, List<AutoCloseable> owned) {
        this.config = requireNonNull(config, "config is null");
        this.moe = requireNonNull(moe, "moe is null");
        this.owned = owned;
        this.decoder = DecoderConfig.from(config);
        this.rope = new RotaryEmbedding(decoder.rope(), decoder.headDim());
        String p = config.weightPrefix();
        int hidden = decoder.hiddenSize();
        this.embedding = matrix(checkpoint, p + "embed_tokens.weight", decoder.vocabSize(), hidden);
        String head = lmHeadName(p);
        if (!decoder.tieWordEmbeddings() && !checkpoint.contains(head)) {
            throw new IllegalArgumentException("the checkpoint has no " + head
                    + " and config.json does not set tie_word_embeddings");
        }
        this.lmHead = decoder.tieWordEmbeddings() ? embedding : matrix(checkpoint, head, decoder.vocabSize(), hidden);
        this.finalNorm = vector(checkpoint, p + "norm.weight", hidden);
        List<Layer> list = new ArrayList<>(decoder.numLayers());
        for (int l = 0; l < decoder.numLayers(); l++) {
            list.add(loadLayer(checkpoint, l));
        }
        this.layers = List.copyOf(list);
    }

    /**
     * A model over {@code checkpoint}'s non-expert tensors, with {@code moe} computing its MoE
     * layers. The caller keeps ownership of both; they must stay open while the model is used.
     */
    public static DecoderModel load(ModelConfig config, Checkpoint checkpoint, MoeLayers moe) {
        return new DecoderModel(config, checkpoint, moe, List.of());
    }

    /** The whole model of a Hugging Face directory in this process, MoE layers included; close it when done. */
    public static DecoderModel open(Path modelDir) throws IOException {
        ModelConfig config = ModelConfig.load(modelDir);
        Checkpoint checkpoint = Checkpoint.open(modelDir);
        ReferenceMoeBlock block = null;
        try {
            block = ReferenceMoeBlock.open(modelDir);
            return new DecoderModel(config, checkpoint, new ReferenceMoeLayers(block), List.of(block, checkpoint));
        } catch (RuntimeException | IOException e) {
            if (block != null) {
                block.close();
            }
            checkpoint.close();
            throw e;
        }
    }

    /** {@code lm_head.weight} beside the decoder: {@code model.} gives {@code lm_head.weight}, {@code language_model.model.} gives {@code language_model.lm_head.weight}. */
    static String lmHeadName(String weightPrefix) {
        String outer = weightPrefix.endsWith("model.")
                ? weightPrefix.substring(0, weightPrefix.length() - "model.".length())
                : weightPrefix;
        return outer + "lm_head.weight";
    }

    private Layer loadLayer(Checkpoint checkpoint, int l) {
        String p = config.weightPrefix() + "layers." + l + ".";
        int hidden = decoder.hiddenSize();
        String a = p + "self_attn.";
        boolean qkvBias = decoder.qkvBias();
        SelfAttention attention = new SelfAttention(decoder, l, rope,
                checkpoint.denseTensor(a + "q_proj.weight"), checkpoint.denseTensor(a + "k_proj.weight"),
                checkpoint.denseTensor(a + "v_proj.weight"), checkpoint.denseTensor(a + "o_proj.weight"),
                qkvBias ? vector(checkpoint, a + "q_proj.bias", decoder.queryDim()) : null,
                qkvBias ? vector(checkpoint, a + "k_proj.bias", decoder.kvDim()) : null,
                qkvBias ? vector(checkpoint, a + "v_proj.bias", decoder.kvDim()) : null,
                decoder.outputBias() ? vector(checkpoint, a + "o_proj.bias", hidden) : null,
                decoder.qkRmsNorm() ? vector(checkpoint, a + "q_norm.weight", decoder.headDim()) : null,
                decoder.qkRmsNorm() ? vector(checkpoint, a + "k_norm.weight", decoder.headDim()) : null);
        ExpertWeights mlp = null;
        if (!config.isMoeLayer(l)) {
            String m = p + switch (config.architecture()) {
                case LLAMA4 -> "feed_forward.";
                case QWEN3_MOE, QWEN2_MOE -> "mlp.";
                case MIXTRAL, DEEPSEEK_V3 -> throw new IllegalArgumentException(
                        config.architecture().cliName() + " layer " + l + " has no dense MLP");
            };
            mlp = new ExpertWeights(checkpoint.denseTensor(m + "gate_proj.weight"), checkpoint.denseTensor(m + "up_proj.weight"),
                    checkpoint.denseTensor(m + "down_proj.weight"));
            if (mlp.hiddenSize() != hidden) {
                throw new IllegalArgumentException("layer " + l + " dense MLP takes width " + mlp.hiddenSize()
                        + ", expected hidden_size " + hidden);
            }
        }
        return new Layer(vector(checkpoint, p + "input_layernorm.weight", hidden),
                vector(checkpoint, p + "post_attention_layernorm.weight", hidden), attention, mlp);
    }

    private static Tensor matrix(Checkpoint checkpoint, String name, long rows, long cols) {
        Tensor t = checkpoint.denseTensor(name);
        if (t.rank() != 2 || t.dim(0) != rows || t.dim(1) != cols) {
            throw new IllegalArgumentException(name + " is " + t + ", expected [" + rows + ", " + cols
                    + "] from config.json");
        }
        return t;
    }

    private static float[] vector(Checkpoint checkpoint, String name, int n) {
        Tensor t = checkpoint.denseTensor(name);
        if (t.elementCount() != n) {
            throw new IllegalArgumentException(name + " is " + t + ", expected " + n + " values");
        }
        return t.toFloatArray();
    }

    public ModelConfig config() {
        return config;
    }

    public DecoderConfig decoderConfig() {
        return decoder;
    }

    public int vocabSize() {
        return decoder.vocabSize();
    }

    /** Whether {@code layer} runs through {@link MoeLayers} (otherwise it has a dense MLP). */
    public boolean isMoeLayer(int layer) {
        return layers.get(layer).mlp() == null;
    }

    /** Bytes of keys and values one token occupies in a {@link KvCache} of {@code dtype} (f32 or bf16). */
    public long kvBytesPerToken(DType dtype) {
        return 2L * dtype.byteSize() * decoder.numLayers() * decoder.kvDim();
    }

    /**
     * A pool of {@code totalBlocks} KV blocks of {@code blockTokens} positions, stored in {@code dtype}
     * (bf16 as the router keeps it, or f32 as transformers does for an f32 model), for sequences to share.
     */
    public KvBlockPool newBlockPool(DType dtype, int blockTokens, int totalBlocks) {
        return new KvBlockPool(this, dtype, decoder.numLayers(), decoder.kvDim(), blockTokens, totalBlocks);
    }

    /** An empty f32 cache for one sequence of up to {@code maxTokens} tokens (prompt and generated), in a pool of its own. */
    public KvCache newCache(int maxTokens) {
        return newCache(maxTokens, DType.F32);
    }

    /** As {@link #newCache(int)}, stored in {@code dtype}. */
    public KvCache newCache(int maxTokens, DType dtype) {
        if (maxTokens <= 0) {
            throw new IllegalArgumentException("KV cache capacity must be positive, got " + maxTokens);
        }
        int blocks = (int) ((maxTokens + (long) KvBlockPool.DEFAULT_BLOCK_TOKENS - 1) / KvBlockPool.DEFAULT_BLOCK_TOKENS);
        return newBlockPool(dtype, KvBlockPool.DEFAULT_BLOCK_TOKENS, blocks).newCache(maxTokens);
    }

    /** Processes {@code tokens} as the next positions of {@code cache}'s sequence; returns the last token's logits. */
    public float[] forward(int[] tokens, KvCache cache) {
        return forward(List.of(new SequenceChunk(cache, tokens))).data();
    }

    /** As {@link #forward(int[], KvCache)}, returning logits for every new token ({@code tokens × vocab}). */
    public FloatMatrix forwardAllLogits(int[] tokens, KvCache cache) {
        return run(List.of(new SequenceChunk(cache, tokens)), true);
    }

    /**
     * One step over several sequences: row {@code i} of the result is the logits after the last
     * token of {@code batch.get(i)}. Each sequence appears at most once.
     */
    public FloatMatrix forward(List<SequenceChunk> batch) {
        return run(batch, false);
    }

    private FloatMatrix run(List<SequenceChunk> batch, boolean allLogits) {
        validate(batch);
        ForwardStep step = new ForwardStep(batch, rope);
        int rows = step.rows;
        int hidden = decoder.hiddenSize();
        float[] x = embed(batch, rows);
        float eps = decoder.rmsNormEps();
        for (int l = 0; l < layers.size(); l++) {
            Layer layer = layers.get(l);
            float[] attended = layer.attention().forward(RmsNorm.rows(x, rows, hidden, layer.inputNorm(), eps), step);
            add(x, attended);
            float[] normed = RmsNorm.rows(x, rows, hidden, layer.postAttentionNorm(), eps);
            float[] ffn;
            if (layer.mlp() == null) {
                FloatMatrix out = moe.forward(l, new FloatMatrix(rows, hidden, normed));
                if (out == null || out.rows() != rows || out.cols() != hidden) {
                    throw new IllegalStateException("MoE layer " + l + " returned "
                            + (out == null ? "nothing" : out.rows() + "x" + out.cols()) + " for " + rows + "x" + hidden);
                }
                ffn = out.data();
            } else {
                ffn = new float[rows * hidden];
                layer.mlp().forward(normed, rows, ffn);
            }
            add(x, ffn);
        }
        for (int s = 0; s < batch.size(); s++) {
            step.caches[s].advance(batch.get(s).length());
        }
        int outRows = allLogits ? rows : batch.size();
        float[] selected = new float[outRows * hidden];
        for (int i = 0; i < outRows; i++) {
            int row = allLogits ? i : step.lastRow[i];
            RmsNorm.apply(x, row * hidden, hidden, finalNorm, eps, selected, i * hidden);
        }
        int vocab = (int) lmHead.dim(0);
        float[] logits = new float[outRows * vocab];
        Gemm.matmulTransposed(selected, outRows, hidden, lmHead, logits);
        return new FloatMatrix(outRows, vocab, logits);
    }

    /** Checks the whole batch before any cache is touched, and reserves room for the new positions. */
    private void validate(List<SequenceChunk> batch) {
        requireNonNull(batch, "batch is null");
        if (batch.isEmpty()) {
            throw new IllegalArgumentException("a forward step needs at least one sequence");
        }
        Set<KvCache> seen = Collections.newSetFromMap(new IdentityHashMap<>());
        int vocab = decoder.vocabSize();
        for (SequenceChunk chunk : batch) {
            KvCache cache = chunk.cache();
            if (cache.owner() != this) {
                throw new IllegalArgumentException("KV cache was made by a different model");
            }
            if (!seen.add(cache)) {
                throw new IllegalArgumentException("a sequence appears twice in one forward step");
            }
            for (int i = 0; i < chunk.length(); i++) {
                int t = chunk.token(i);
                if (t < 0 || t >= vocab) {
                    throw new IllegalArgumentException("token id " + t + " is outside the vocabulary 0.." + (vocab - 1));
                }
            }
            if (chunk.length() > cache.remaining()) {
                throw new IllegalArgumentException(chunk.length() + " new tokens do not fit: the KV cache holds "
                        + cache.length() + " of " + cache.capacity());
            }
        }
        for (SequenceChunk chunk : batch) {
            chunk.cache().reserve(chunk.cache().length() + chunk.length());
        }
    }

    private float[] embed(List<SequenceChunk> batch, int rows) {
        int hidden = decoder.hiddenSize();
        float[] x = new float[rows * hidden];
        int r = 0;
        for (SequenceChunk chunk : batch) {
            for (int i = 0; i < chunk.length(); i++, r++) {
                long base = (long) chunk.token(i) * hidden;
                for (int c = 0; c < hidden; c++) {
                    x[r * hidden + c] = embedding.getFloat(base + c);
                }
            }
        }
        return x;
    }

    private static void add(float[] x, float[] y) {
        for (int i = 0; i < x.length; i++) {
            x[i] += y[i];
        }
    }

    /**
     * Greedy decoding: prefills {@code prompt}, then appends the arg-max token {@code maxNewTokens}
     * times (no stop tokens; the caller cuts at EOS). The reference the cluster's generation is
     * checked against.
     */
    public int[] generateGreedy(int[] prompt, int maxNewTokens) {
        return generateGreedy(prompt, maxNewTokens, DType.F32);
    }

    /** As {@link #generateGreedy(int[], int)} with keys and values stored in {@code kvDtype}, as a router stores them. */
    public int[] generateGreedy(int[] prompt, int maxNewTokens, DType kvDtype) {
        if (maxNewTokens <= 0) {
            throw new IllegalArgumentException("maxNewTokens must be positive, got " + maxNewTokens);
        }
        KvCache cache = newCache(prompt.length + maxNewTokens, kvDtype);
        float[] logits = forward(prompt, cache);
        int[] out = new int[maxNewTokens];
        for (int i = 0; i < maxNewTokens; i++) {
            out[i] = argmax(logits);
            if (i + 1 < maxNewTokens) {
                logits = forward(new int[] {out[i]}, cache);
            }
        }
        return out;
    }

    /** Index of the largest value, the lowest index on ties (as {@code torch.argmax}); NaN never wins. */
    public static int argmax(float[] logits) {
        int best = 0;
        for (int i = 1; i < logits.length; i++) {
            if (logits[i] > logits[best] || Float.isNaN(logits[best]) && !Float.isNaN(logits[i])) {
                best = i;
            }
        }
        return best;
    }

    /** The architecture this model runs. */
    public Architecture architecture() {
        return config.architecture();
    }

    /** Closes what {@link #open} opened; a model from {@link #load} owns nothing. */
    @Override
    public void close() {
        RuntimeException failure = null;
        for (AutoCloseable c : owned) {
            try {
                c.close();
            } catch (Exception e) {
                if (failure == null) {
                    failure = new IllegalStateException("closing the model failed", e);
                } else {
                    failure.addSuppressed(e);
                }
            }
        }
        if (failure != null) {
            throw failure;
        }
    }
}
