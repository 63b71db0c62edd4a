// The dense model's device kernels (issue 12): what DecoderModel does on the CPU, for a router whose
// dense weights and paged KV cache live on a GPU. Built to PTX by build-ptx.sh; the host side loads
// that PTX with cuModuleLoadData as the expert workers load moe_ffn.ptx.
//
// Activations (the residual stream, q, k, v, attention output, logits) are f32, as the CPU runner
// keeps them; embeddings are bf16 as stored; keys and values are bf16 in the paged cache, widened as
// read. Norm weights and RoPE inverse frequencies are small f32 tables the host uploads once.
//
// Paged KV cache, one pair of buffers per layer: k_cache and v_cache are
// [num_blocks][block_tokens][kv_heads][head_dim] bf16, the per-layer slice of the CPU runner's blocks
// (KvCache.java). Position p of a sequence lives in physical block block_table[p / block_tokens] at
// slot p % block_tokens; a slot mapping entry is physical_block * block_tokens + slot, as vLLM's
// reshape_and_cache takes it.
//
// Decode attention is split-K (flash-decoding): block (head, sequence, split) scores the split's
// positions against one query head, and writes its max, its sum of exponentials and its normalised
// output; dense_paged_decode_combine rescales the splits to the global max and merges them. A query
// head h reads kv head h / (heads / kv_heads) (transformers' repeat_kv). The visible positions of a
// sequence, [first_visible, last_position], carry the layer's mask: causal, sliding window or Llama 4
// chunked attention are a first_visible the host computes (DecoderConfig.LayerAttention.firstVisible).
//
// Reductions go through shared memory with __syncthreads only (no warp shuffles), so DENSE_EMULATE
// builds this file as host C++ against src/test/cuda/dense_emulator.cpp and the kernels themselves
// are tested without a GPU (DenseKernelEmulationTest).

#ifndef DENSE_EMULATE
#include <cuda_bf16.h>
#endif

namespace dense {

constexpr int MAX_HEAD_DIM = 256;   // q and the output accumulator of one head live in shared memory
constexpr int MAX_SPLIT = 256;      // positions per split: one score per position in shared memory
constexpr int THREADS = 128;        // threads of every kernel that reduces over a block
constexpr int MAX_TOP_K = 256;      // top_k the sampler selects on the device; more falls back to the host

typedef __nv_bfloat16 bf16;

// Sum over the block of v; every thread gets the result. red has THREADS entries.
__device__ __forceinline__ float block_sum(float v, float* red) {
    red[threadIdx.x] = v;
    __syncthreads();
    for (int s = THREADS / 2; s > 0; s >>= 1) {
        if ((int) threadIdx.x < s) {
            red[threadIdx.x] += red[threadIdx.x + s];
        }
        __syncthreads();
    }
    float out = red[0];
    __syncthreads();
    return out;
}

__device__ __forceinline__ float block_max(float v, float* red) {
    red[threadIdx.x] = v;
    __syncthreads();
    for (int s = THREADS / 2; s > 0; s >>= 1) {
        if ((int) threadIdx.x < s) {
            red[threadIdx.x] = fmaxf(red[threadIdx.x], red[threadIdx.x + s]);
        }
        __syncthreads();
    }
    float out = red[0];
    __syncthreads();
    return out;
}

// Whether (va, ia) comes before (vb, ib) in the sampler's order: larger logit first, lower index on ties.
__device__ __forceinline__ bool before(float va, int ia, float vb, int ib) {
    return va > vb || (va == vb && ia < ib);
}

}  // namespace dense

using namespace dense;

// out[r, :] = table[tokens[r], :] widened to f32. Grid: rows.
extern "C" __global__ void __launch_bounds__(THREADS) dense_embed(float* out, const bf16* table, const int* tokens,
        int hidden) {
    const long long row = blockIdx.x;
    const bf16* src = table + (long long) tokens[row] * hidden;
    for (int i = threadIdx.x; i < hidden; i += THREADS) {
        out[row * hidden + i] = __bfloat162float(src[i]);
    }
}

// out = weight * (x * rsqrt(mean(x^2) + eps)) per row of width; weight null for Llama 4's L2 norm.
// Rows of one head (width head_dim, rows tokens * heads) give Qwen3's q/k norm. out may be x. Grid: rows.
extern "C" __global__ void __launch_bounds__(THREADS) dense_rms_norm(float* out, const float* x, const float* weight,
        int width, float eps) {
    __shared__ float red[THREADS];
    const long long base = (long long) blockIdx.x * width;
    float squares = 0.f;
    for (int i = threadIdx.x; i < width; i += THREADS) {
        float v = x[base + i];
        squares += v * v;
    }
    float variance = block_sum(squares, red) / (float) width;
    float inverse = rsqrtf(variance + eps);
    for (int i = threadIdx.x; i < width; i += THREADS) {
        float y = x[base + i] * inverse;
        out[base + i] = weight == nullptr ? y : weight[i] * y;
    }
}

// Rotates every head of row r by positions[r] * inv_freq[i] for pair i, in place. Pairs are (i, i + d/2)
// (rotate_half: Mixtral, Qwen) or (2i, 2i + 1) (interleaved: Llama 4). inv_freq (head_dim / 2 values)
// carries the rope type (default, linear, llama3), as RotaryEmbedding.inverseFrequencies computes it.
// x is [rows, heads * head_dim]. Grid: rows.
extern "C" __global__ void __launch_bounds__(THREADS) dense_rope(float* x, const int* positions, const float* inv_freq,
        int heads, int head_dim, int interleaved) {
    const int half = head_dim / 2;
    const long long base = (long long) blockIdx.x * heads * head_dim;
    const float position = (float) positions[blockIdx.x];
    for (int t = threadIdx.x; t < heads * half; t += THREADS) {
        int head = t / half;
        int i = t % half;
        float angle = position * inv_freq[i];
        float c = cosf(angle);
        float s = sinf(angle);
        long long a = base + (long long) head * head_dim + (interleaved ? 2 * i : i);
        long long b = interleaved ? a + 1 : a + half;
        float x0 = x[a];
        float x1 = x[b];
        x[a] = x0 * c - x1 * s;
        x[b] = x1 * c + x0 * s;
    }
}

// Llama 4's attention temperature tuning on NoPE layers: q *= log1p(floor((pos + 1) / floor_scale)) *
// attn_scale + 1. q is [rows, width]. Grid: rows.
extern "C" __global__ void __launch_bounds__(THREADS) dense_attn_temperature(float* q, const int* positions, int width,
        float floor_scale, float attn_scale) {
    float steps = floorf(((float) positions[blockIdx.x] + 1.f) / floor_scale);
    float scale = log1pf(steps) * attn_scale + 1.f;
    for (int i = threadIdx.x; i < width; i += THREADS) {
        q[(long long) blockIdx.x * width + i] *= scale;
    }
}

// x += y over n values (the residual adds). Grid: ceil(n / THREADS).
extern "C" __global__ void __launch_bounds__(THREADS) dense_add(float* x, const float* y, long long n) {
    long long i = (long long) blockIdx.x * THREADS + threadIdx.x;
    if (i < n) {
        x[i] += y[i];
    }
}

// Stores row r's keys and values (kv_dim = kv_heads * head_dim f32 each) as bf16, round to nearest
// even, at cache slot slots[r]. Grid: rows.
extern "C" __global__ void __launch_bounds__(THREADS) dense_kv_write(bf16* k_cache, bf16* v_cache, const float* k,
        const float* v, const int* slots, int kv_dim) {
    const long long src = (long long) blockIdx.x * kv_dim;
    const long long dst = (long long) slots[blockIdx.x] * kv_dim;
    for (int i = threadIdx.x; i < kv_dim; i += THREADS) {
        k_cache[dst + i] = __float2bfloat16_rn(k[src + i]);
        v_cache[dst + i] = __float2bfloat16_rn(v[src + i]);
    }
}

// One split of one query head of one decoding sequence. q is [seqs, heads * head_dim] (after RoPE,
// norms and temperature); part_out is [seqs, heads, splits, head_dim], part_max and part_sum
// [seqs, heads, splits]. Split s covers positions first_visible + s * split_tokens onwards, at most
// split_tokens of them, up to last_position; an empty split writes max -inf and sum 0.
// Grid: (heads, seqs, splits); split_tokens <= MAX_SPLIT, head_dim <= MAX_HEAD_DIM.
extern "C" __global__ void __launch_bounds__(THREADS) dense_paged_decode_attention(float* part_out, float* part_max,
        float* part_sum, const float* q, const bf16* k_cache, const bf16* v_cache, const int* block_tables,
        int max_blocks, const int* first_visible, const int* last_position, int heads, int kv_heads, int head_dim,
        int block_tokens, int split_tokens, float scale) {
    __shared__ float q_s[MAX_HEAD_DIM];
    __shared__ float scores[MAX_SPLIT];
    __shared__ float red[THREADS];
    const int head = blockIdx.x;
    const int seq = blockIdx.y;
    const int split = blockIdx.z;
    const int splits = gridDim.z;
    const int kv_head = head / (heads / kv_heads);
    const int kv_dim = kv_heads * head_dim;
    const long long part = ((long long) seq * heads + head) * splits + split;
    const int from = first_visible[seq] + split * split_tokens;
    const int to = min(last_position[seq], from + split_tokens - 1);
    const int n = to - from + 1;
    if (n <= 0) {
        for (int i = threadIdx.x; i < head_dim; i += THREADS) {
            part_out[part * head_dim + i] = 0.f;
        }
        if (threadIdx.x == 0) {
            part_max[part] = -INFINITY;
            part_sum[part] = 0.f;
        }
        return;
    }
    for (int i = threadIdx.x; i < head_dim; i += THREADS) {
        q_s[i] = q[((long long) seq * heads + head) * head_dim + i];
    }
    __syncthreads();
    const int* table = block_tables + (long long) seq * max_blocks;
    for (int j = threadIdx.x; j < n; j += THREADS) {
        int p = from + j;
        long long at = ((long long) table[p / block_tokens] * block_tokens + p % block_tokens) * kv_dim
                + (long long) kv_head * head_dim;
        float dot = 0.f;
        for (int i = 0; i < head_dim; i++) {
            dot += q_s[i] * __bfloat162float(k_cache[at + i]);
        }
        scores[j] = dot * scale;
    }
    __syncthreads();
    float local_max = -INFINITY;
    for (int j = threadIdx.x; j < n; j += THREADS) {
        local_max = fmaxf(local_max, scores[j]);
    }
    const float max = block_max(local_max, red);
    float local_sum = 0.f;
    for (int j = threadIdx.x; j < n; j += THREADS) {
        float e = expf(scores[j] - max);
        scores[j] = e;
        local_sum += e;
    }
    const float sum = block_sum(local_sum, red);  // its barriers also publish scores[]
    const float inverse = 1.f / sum;
    for (int i = threadIdx.x; i < head_dim; i += THREADS) {
        float acc = 0.f;
        for (int j = 0; j < n; j++) {
            int p = from + j;
            long long at = ((long long) table[p / block_tokens] * block_tokens + p % block_tokens) * kv_dim
                    + (long long) kv_head * head_dim;
            acc += scores[j] * __bfloat162float(v_cache[at + i]);
        }
        part_out[part * head_dim + i] = acc * inverse;
    }
    if (threadIdx.x == 0) {
        part_max[part] = max;
        part_sum[part] = sum;
    }
}

// Merges the splits of dense_paged_decode_attention: weight_s = exp(max_s - max) * sum_s,
// out = sum_s weight_s * out_s / sum_s weight_s, into out [seqs, heads * head_dim]. Grid: (heads, seqs).
extern "C" __global__ void __launch_bounds__(THREADS) dense_paged_decode_combine(float* out, const float* part_out,
        const float* part_max, const float* part_sum, int heads, int head_dim, int splits) {
    const long long first = ((long long) blockIdx.y * heads + blockIdx.x) * splits;
    float max = -INFINITY;
    for (int s = 0; s < splits; s++) {
        max = fmaxf(max, part_max[first + s]);
    }
    float total = 0.f;
    for (int s = 0; s < splits; s++) {
        total += part_sum[first + s] == 0.f ? 0.f : expf(part_max[first + s] - max) * part_sum[first + s];
    }
    for (int i = threadIdx.x; i < head_dim; i += THREADS) {
        float acc = 0.f;
        for (int s = 0; s < splits; s++) {
            if (part_sum[first + s] != 0.f) {
                acc += expf(part_max[first + s] - max) * part_sum[first + s] * part_out[(first + s) * head_dim + i];
            }
        }
        out[((long long) blockIdx.y * heads + blockIdx.x) * head_dim + i] = acc / total;
    }
}

// The next token of each row of logits [rows, vocab], as the router's Sampler chooses it, so only
// token ids leave the device. temperature 0: arg-max, lowest index on ties. Otherwise the top_k
// logits in the sampler's order (larger first, lower index on ties), softmax of logit / temperature in
// f64, cut where the cumulative probability reaches top_p, and the first token where
// uniform[r] * (kept mass) is used up; uniform[r] is the request's seeded generator's next double.
// Rows with temperature > 0 and top_k outside 1..MAX_TOP_K get -1: the host samples those.
// Grid: rows.
extern "C" __global__ void __launch_bounds__(THREADS) dense_sample(int* tokens, const float* logits, int vocab,
        const float* temperature, const int* top_k, const float* top_p, const double* uniform) {
    __shared__ float chosen_value[MAX_TOP_K];
    __shared__ int chosen_index[MAX_TOP_K];
    __shared__ float red_value[THREADS];
    __shared__ int red_index[THREADS];
    const int row = blockIdx.x;
    const float* l = logits + (long long) row * vocab;
    const float t = temperature[row];
    int k = t == 0.f ? 1 : top_k[row];
    if (k < 1 || k > MAX_TOP_K) {
        if (threadIdx.x == 0) {
            tokens[row] = -1;
        }
        return;
    }
    k = min(k, vocab);
    // k rounds of a block-wide arg-max over the logits after the last chosen one in the sampler's order
    float last_value = INFINITY;
    int last_index = -1;
    for (int round = 0; round < k; round++) {
        float best_value = -INFINITY;
        int best_index = -1;
        for (int i = threadIdx.x; i < vocab; i += THREADS) {
            float v = l[i];
            if (v != v) {
                continue;  // NaN never wins
            }
            if (before(last_value, last_index, v, i) && (best_index < 0 || before(v, i, best_value, best_index))) {
                best_value = v;
                best_index = i;
            }
        }
        red_value[threadIdx.x] = best_value;
        red_index[threadIdx.x] = best_index;
        __syncthreads();
        for (int s = THREADS / 2; s > 0; s >>= 1) {
            if ((int) threadIdx.x < s) {
                float ov = red_value[threadIdx.x + s];
                int oi = red_index[threadIdx.x + s];
                if (oi >= 0 && (red_index[threadIdx.x] < 0 || before(ov, oi, red_value[threadIdx.x], red_index[threadIdx.x]))) {
                    red_value[threadIdx.x] = ov;
                    red_index[threadIdx.x] = oi;
                }
            }
            __syncthreads();
        }
        last_value = red_value[0];
        last_index = red_index[0];
        if (threadIdx.x == 0) {
            chosen_value[round] = last_value;
            chosen_index[round] = last_index;
        }
        __syncthreads();
    }
    if (threadIdx.x != 0) {
        return;
    }
    if (t == 0.f || chosen_index[0] < 0) {
        tokens[row] = chosen_index[0] < 0 ? 0 : chosen_index[0];
        return;
    }
    const double max = (double) (chosen_value[0] / t);
    double sum = 0.0;
    for (int i = 0; i < k; i++) {
        sum += exp((double) (chosen_value[i] / t) - max);
    }
    double mass = 0.0;
    int cut = k;
    for (int i = 0; i < k; i++) {
        mass += exp((double) (chosen_value[i] / t) - max) / sum;
        if (mass >= (double) top_p[row]) {
            cut = i + 1;
            break;
        }
    }
    double total = 0.0;
    for (int i = 0; i < cut; i++) {
        total += exp((double) (chosen_value[i] / t) - max);
    }
    double r = uniform[row] * total;
    for (int i = 0; i < cut; i++) {
        r -= exp((double) (chosen_value[i] / t) - max);
        if (r <= 0.0) {
            tokens[row] = chosen_index[i];
            return;
        }
    }
    tokens[row] = chosen_index[cut - 1];
}
