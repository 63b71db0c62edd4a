package dev.moecluster.core.runner;

import static java.util.Objects.requireNonNull;

import dev.moecluster.core.kernel.Gemm;
import dev.moecluster.core.tensor.Tensor;
import java.util.stream.IntStream;

/**
 * One layer's grouped-query self-attention with a paged KV cache, in f32 (bf16 keys and values
 * are widened as read). Per new row: q/k/v projections (+ bias), Qwen3's per-head q/k RMSNorm, RoPE, Llama 4's L2 q/k norm (after RoPE) or temperature
 * tuning (NoPE layers); keys and values go into the sequence's cache; each query head {@code h}
 * attends with key/value head {@code h / (heads / kv_heads)} (transformers' {@code repeat_kv}) over
 * the causal window the layer allows, scores scaled by {@code head_dim^-0.5}, softmax in f32.
 */
final class SelfAttention {
    /** Below this many multiply-adds the score loop runs on the calling thread. */
    private static final long PARALLEL_WORK = 1L << 16;

    private final DecoderConfig config;
    private final DecoderConfig.LayerAttention spec;
    private final int layer;
    private final Tensor q;
    private final Tensor k;
    private final Tensor v;
    private final Tensor o;
    private final float[] qBias;
    private final float[] kBias;
    private final float[] vBias;
    private final float[] oBias;
    private final float[] qNorm;
    private final float[] kNorm;
    private final RotaryEmbedding rope;
    private final float scaling;

    /** Weights are Linear layout ({@code [out, in]}); biases and norms may be null where the model has none. */
    SelfAttention(DecoderConfig config, int layer, RotaryEmbedding rope, Tensor q, Tensor k, Tensor v, Tensor o,
            float[] qBias, float[] kBias, float[] vBias, float[] oBias, float[] qNorm, float[] kNorm) {
        this.config = requireNonNull(config, "config is null");
        this.spec = config.layer(layer);
        this.layer = layer;
        this.rope = requireNonNull(rope, "rope is null");
        this.q = checkShape(q, config.queryDim(), config.hiddenSize(), "q_proj");
        this.k = checkShape(k, config.kvDim(), config.hiddenSize(), "k_proj");
        this.v = checkShape(v, config.kvDim(), config.hiddenSize(), "v_proj");
        this.o = checkShape(o, config.hiddenSize(), config.queryDim(), "o_proj");
        this.qBias = checkLength(qBias, config.queryDim(), "q_proj.bias");
        this.kBias = checkLength(kBias, config.kvDim(), "k_proj.bias");
        this.vBias = checkLength(vBias, config.kvDim(), "v_proj.bias");
        this.oBias = checkLength(oBias, config.hiddenSize(), "o_proj.bias");
        this.qNorm = checkLength(qNorm, config.headDim(), "q_norm");
        this.kNorm = checkLength(kNorm, config.headDim(), "k_norm");
        this.scaling = (float) Math.pow(config.headDim(), -0.5);
    }

    private Tensor checkShape(Tensor t, long rows, long cols, String what) {
        requireNonNull(t, what + " is null");
        if (t.rank() != 2 || t.dim(0) != rows || t.dim(1) != cols) {
            throw new IllegalArgumentException("layer " + layer + " " + what + " is " + t + ", expected [" + rows + ", "
                    + cols + "] from config.json");
        }
        return t;
    }

    private float[] checkLength(float[] values, int n, String what) {
        if (values != null && values.length != n) {
            throw new IllegalArgumentException("layer " + layer + " " + what + " has " + values.length
                    + " values, expected " + n);
        }
        return values;
    }

    /**
     * Attends for the rows of {@code step} ({@code h} is {@code rows × hidden}, the input-normed hidden
     * states), writing their keys and values into the step's caches at their positions, and returns
     * the o-projected output ({@code rows × hidden}).
     */
    float[] forward(float[] h, ForwardStep step) {
        int rows = step.rows;
        int hidden = config.hiddenSize();
        int d = config.headDim();
        int qDim = config.queryDim();
        int kvDim = config.kvDim();
        float[] qs = project(h, rows, q, qBias, qDim);
        float[] ks = project(h, rows, k, kBias, kvDim);
        float[] vs = project(h, rows, v, vBias, kvDim);
        float eps = config.rmsNormEps();
        for (int r = 0; r < rows; r++) {
            int position = step.rowPosition[r];
            float temperature = spec.temperatureTuning() ? temperatureScale(position) : 1f;
            for (int head = 0; head < config.numHeads(); head++) {
                prepare(qs, r * qDim + head * d, qNorm, step, r, eps, temperature);
            }
            for (int head = 0; head < config.numKvHeads(); head++) {
                prepare(ks, r * kvDim + head * d, kNorm, step, r, eps, 1f);
            }
            step.cache(r).write(layer, position, ks, r * kvDim, vs, r * kvDim);
        }
        float[] context = new float[rows * qDim];
        int heads = config.numHeads();
        int group = config.groupSize();
        long work = 0;
        for (int r = 0; r < rows; r++) {
            work += (long) (step.rowPosition[r] - spec.firstVisible(step.rowPosition[r]) + 1) * qDim * 2;
        }
        IntStream tasks = IntStream.range(0, rows * heads);
        if (work >= PARALLEL_WORK) {
            tasks = tasks.parallel();
        }
        tasks.forEach(task -> {
            int r = task / heads;
            int head = task % heads;
            int position = step.rowPosition[r];
            attend(qs, r * qDim + head * d, step.cache(r), layer, (head / group) * d, d, spec.firstVisible(position),
                    position, scaling, context, r * qDim + head * d);
        });
        return project(context, rows, o, oBias, hidden);
    }

    /** Per-head transforms of a query or key vector, in transformers' order. */
    private void prepare(float[] x, int offset, float[] norm, ForwardStep step, int row, float eps, float temperature) {
        int d = config.headDim();
        if (norm != null) {
            RmsNorm.apply(x, offset, d, norm, eps, x, offset);
        }
        if (spec.rope()) {
            rope.rotate(x, offset, step.cos, step.sin, row * step.half);
        }
        if (spec.qkL2Norm()) {
            RmsNorm.apply(x, offset, d, null, eps, x, offset);
        }
        if (temperature != 1f) {
            for (int i = 0; i < d; i++) {
                x[offset + i] *= temperature;
            }
        }
    }

    /** Llama 4: {@code log1p(floor((pos + 1) / floor_scale)) * attn_scale + 1}, in f32. */
    float temperatureScale(int position) {
        float steps = (float) Math.floor(((float) position + 1f) / config.floorScale());
        return (float) Math.log1p(steps) * config.attnScale() + 1f;
    }

    private static float[] project(float[] x, int rows, Tensor w, float[] bias, int width) {
        float[] out = new float[rows * width];
        Gemm.matmulTransposed(x, rows, (int) w.dim(1), w, out);
        if (bias != null) {
            for (int r = 0; r < rows; r++) {
                for (int i = 0; i < width; i++) {
                    out[r * width + i] += bias[i];
                }
            }
        }
        return out;
    }

    /**
     * One query head against {@code layer}'s cached keys/values at positions {@code [from, to]}: scores
     * {@code (q · k) * scaling}, softmax, weighted sum of values into {@code out[outOffset, + d)}.
     * The key/value head starts {@code kvOffset} into each cached row.
     */
    static void attend(float[] q, int qOffset, KvCache cache, int layer, int kvOffset, int d, int from, int to,
            float scaling, float[] out, int outOffset) {
        int n = to - from + 1;
        float[] scores = new float[n];
        float max = Float.NEGATIVE_INFINITY;
        for (int j = 0; j < n; j++) {
            scores[j] = cache.dotKey(layer, from + j, kvOffset, q, qOffset, d) * scaling;
            max = Math.max(max, scores[j]);
        }
        double sum = 0;
        for (int j = 0; j < n; j++) {
            scores[j] = (float) Math.exp(scores[j] - max);
            sum += scores[j];
        }
        float inverse = (float) (1.0 / sum);
        for (int i = 0; i < d; i++) {
            out[outOffset + i] = 0;
        }
        for (int j = 0; j < n; j++) {
            cache.addValue(layer, from + j, kvOffset, scores[j] * inverse, out, outOffset, d);
        }
    }
}
