// Device check of the dense model's kernels (issue 12), for the GPU machine: no JDK needed. Built here
// by build-dense-check.sh (nvcc, static cudart, sm_90 code plus compute_80 PTX) into the kit; run by
// `bench/gpu/check.sh router`. It includes core/src/main/cuda/dense.cu itself, so what runs is the
// source of the committed PTX.
//
// (a) correctness on the device against plain C++ loops on the host (in double): paged decode
//     attention + combine at Scout's attention shape (40 query heads, 8 kv heads, head_dim 128,
//     16-token blocks) over scattered block tables, partial blocks, one-token and sliding-window
//     sequences, several split sizes; the cache written by dense_kv_write; RMSNorm, RoPE (both pair
//     layouts), greedy sampling over a 202,048-token vocabulary.
// (b) timing with CUDA events: decode attention (kv write + split-K attention + combine, one layer)
//     at batch 1, 16 and 64 with 2,048 cached tokens each, next to PyTorch eager's
//     scaled_dot_product_attention on the same shapes when --torch FILE (torch_dense.py's TSV) is given;
//     the sampler at batch 64; RMSNorm and RoPE at hidden 5120.
// Exit 0 when every check passes, 1 when one fails, 2 when there is no usable GPU.

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "../../core/src/main/cuda/dense.cu"

#define CK(x)                                                                                   \
    do {                                                                                        \
        cudaError_t e_ = (x);                                                                   \
        if (e_ != cudaSuccess) {                                                                \
            std::fprintf(stderr, "dense_check: %s failed: %s\n", #x, cudaGetErrorString(e_));  \
            std::exit(1);                                                                       \
        }                                                                                       \
    } while (0)

namespace {

constexpr int HEADS = 40;
constexpr int KV_HEADS = 8;
constexpr int HEAD_DIM = 128;
constexpr int BLOCK = 16;
constexpr int HIDDEN = 5120;
constexpr int VOCAB = 202048;

bool failed = false;

struct Rng {
    uint64_t s;
    uint64_t next() {
        uint64_t z = (s += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        return z ^ (z >> 31);
    }
    double uniform() { return (next() >> 11) * 0x1.0p-53; }
    float gauss() {
        double u = std::max(uniform(), 1e-300), v = uniform();
        return (float) (std::sqrt(-2 * std::log(u)) * std::cos(2 * M_PI * v));
    }
};

uint16_t to_bf16(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t) (u >> 16);
}

float from_bf16(uint16_t b) {
    uint32_t u = (uint32_t) b << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}

template <typename T>
T* upload(const std::vector<T>& host) {
    T* d = nullptr;
    CK(cudaMalloc(&d, std::max<size_t>(1, host.size()) * sizeof(T)));
    if (!host.empty()) {
        CK(cudaMemcpy(d, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice));
    }
    return d;
}

template <typename T>
std::vector<T> download(const T* d, size_t n) {
    std::vector<T> host(n);
    CK(cudaMemcpy(host.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost));
    return host;
}

void report(const std::string& what, double error, double tolerance) {
    bool ok = error <= tolerance;
    failed |= !ok;
    std::printf("  %-78s max error %.3g (tolerance %.1g) %s\n", what.c_str(), error, tolerance, ok ? "ok" : "FAIL");
}

// One decode step's attention for `lens.size()` sequences: returns the device output next to the reference.
struct AttentionRun {
    double error;
    float ms;          // one layer: kv write + attention + combine, averaged over the timed launches
    double kv_bytes;   // cache bytes the attention reads
};

AttentionRun attention(const std::vector<int>& lens, const std::vector<int>& first, int split, int timed, uint64_t seed) {
    Rng rng{seed};
    const int seqs = (int) lens.size();
    const int kv_dim = KV_HEADS * HEAD_DIM;
    std::vector<int> blocks_of(seqs);
    int total_blocks = 0, max_blocks = 0, longest = 0, rows = 0;
    for (int s = 0; s < seqs; s++) {
        blocks_of[s] = (lens[s] + BLOCK - 1) / BLOCK;
        total_blocks += blocks_of[s];
        max_blocks = std::max(max_blocks, blocks_of[s]);
        longest = std::max(longest, lens[s] - first[s]);
        rows += lens[s];
    }
    // physical blocks in a shuffled order, so every table is scattered
    std::vector<int> physical(total_blocks);
    for (int i = 0; i < total_blocks; i++) physical[i] = i;
    for (int i = total_blocks - 1; i > 0; i--) std::swap(physical[i], physical[rng.next() % (i + 1)]);
    std::vector<int> tables((size_t) seqs * max_blocks, 0);
    for (int s = 0, at = 0; s < seqs; s++)
        for (int b = 0; b < blocks_of[s]; b++) tables[(size_t) s * max_blocks + b] = physical[at++];
    // every cached position's keys and values, written through dense_kv_write by slot
    std::vector<float> k((size_t) rows * kv_dim), v((size_t) rows * kv_dim);
    std::vector<int> slots(rows);
    for (auto& x : k) x = rng.gauss();
    for (auto& x : v) x = rng.gauss();
    for (int s = 0, r = 0; s < seqs; s++)
        for (int p = 0; p < lens[s]; p++, r++) slots[r] = tables[(size_t) s * max_blocks + p / BLOCK] * BLOCK + p % BLOCK;
    std::vector<float> q((size_t) seqs * HEADS * HEAD_DIM);
    for (auto& x : q) x = rng.gauss();
    std::vector<int> last(seqs);
    for (int s = 0; s < seqs; s++) last[s] = lens[s] - 1;
    const int splits = (longest + split - 1) / split;
    const float scale = 1.f / std::sqrt((float) HEAD_DIM);

    float *dk = upload(k), *dv = upload(v), *dq = upload(q);
    int *dslots = upload(slots), *dtables = upload(tables), *dfirst = upload(first), *dlast = upload(last);
    bf16 *kc, *vc;
    size_t cache = (size_t) total_blocks * BLOCK * kv_dim;
    CK(cudaMalloc(&kc, cache * 2));
    CK(cudaMalloc(&vc, cache * 2));
    float *part_out, *part_max, *part_sum, *out;
    CK(cudaMalloc(&part_out, (size_t) seqs * HEADS * splits * HEAD_DIM * 4));
    CK(cudaMalloc(&part_max, (size_t) seqs * HEADS * splits * 4));
    CK(cudaMalloc(&part_sum, (size_t) seqs * HEADS * splits * 4));
    CK(cudaMalloc(&out, (size_t) seqs * HEADS * HEAD_DIM * 4));
    CK(cudaMemset(out, 0xff, (size_t) seqs * HEADS * HEAD_DIM * 4));  // NaN until written
    auto step = [&](int kv_rows) {
        // the first call writes every cached position; a timed decode step writes one row per sequence
        dense_kv_write<<<kv_rows, THREADS>>>(kc, vc, dk + (size_t) (rows - kv_rows) * kv_dim,
                dv + (size_t) (rows - kv_rows) * kv_dim, dslots + (rows - kv_rows), kv_dim);
        dense_paged_decode_attention<<<dim3(HEADS, seqs, splits), THREADS>>>(part_out, part_max, part_sum, dq, kc, vc,
                dtables, max_blocks, dfirst, dlast, HEADS, KV_HEADS, HEAD_DIM, BLOCK, split, scale);
        dense_paged_decode_combine<<<dim3(HEADS, seqs), THREADS>>>(out, part_out, part_max, part_sum, HEADS, HEAD_DIM,
                splits);
    };
    step(rows);
    CK(cudaGetLastError());
    CK(cudaDeviceSynchronize());
    std::vector<float> got = download(out, (size_t) seqs * HEADS * HEAD_DIM);

    double error = 0;
    for (int s = 0, base = 0; s < seqs; base += lens[s], s++) {
        for (int h = 0; h < HEADS; h++) {
            int kvh = h / (HEADS / KV_HEADS);
            std::vector<double> sc(lens[s], 0);
            double mx = -INFINITY;
            for (int p = first[s]; p <= last[s]; p++) {
                double dot = 0;
                for (int i = 0; i < HEAD_DIM; i++)
                    dot += (double) q[((size_t) s * HEADS + h) * HEAD_DIM + i]
                            * from_bf16(to_bf16(k[(size_t) (base + p) * kv_dim + kvh * HEAD_DIM + i]));
                sc[p] = dot * scale;
                mx = std::max(mx, sc[p]);
            }
            double sum = 0;
            for (int p = first[s]; p <= last[s]; p++) sum += (sc[p] = std::exp(sc[p] - mx));
            for (int i = 0; i < HEAD_DIM; i++) {
                double o = 0;
                for (int p = first[s]; p <= last[s]; p++)
                    o += sc[p] * from_bf16(to_bf16(v[(size_t) (base + p) * kv_dim + kvh * HEAD_DIM + i]));
                double d = std::fabs(o / sum - got[((size_t) s * HEADS + h) * HEAD_DIM + i]);
                error = std::max(error, std::isnan(d) ? INFINITY : d);
            }
        }
    }
    float ms = 0;
    if (timed > 0) {
        cudaEvent_t a, b;
        CK(cudaEventCreate(&a));
        CK(cudaEventCreate(&b));
        for (int i = 0; i < 5; i++) step(seqs);
        CK(cudaEventRecord(a));
        for (int i = 0; i < timed; i++) step(seqs);
        CK(cudaEventRecord(b));
        CK(cudaEventSynchronize(b));
        CK(cudaEventElapsedTime(&ms, a, b));
        ms /= timed;
    }
    double kv_bytes = 0;
    for (int s = 0; s < seqs; s++) kv_bytes += 2.0 * (last[s] - first[s] + 1) * kv_dim * 2;
    for (void* p : std::initializer_list<void*>{dk, dv, dq, dslots, dtables, dfirst, dlast, kc, vc, part_out, part_max,
                                                part_sum, out})
        CK(cudaFree(p));
    return {error, ms, kv_bytes};
}

double rms_norm_check(float* ms_out) {
    Rng rng{7};
    const int rows = 64;
    std::vector<float> x((size_t) rows * HIDDEN), w(HIDDEN);
    for (auto& e : x) e = rng.gauss() * 3;
    for (auto& e : w) e = 0.5f + (float) rng.uniform();
    float *dx = upload(x), *dw = upload(w), *dout;
    CK(cudaMalloc(&dout, x.size() * 4));
    dense_rms_norm<<<rows, THREADS>>>(dout, dx, dw, HIDDEN, 1e-5f);
    CK(cudaDeviceSynchronize());
    std::vector<float> got = download(dout, x.size());
    double error = 0;
    for (int r = 0; r < rows; r++) {
        double ss = 0;
        for (int i = 0; i < HIDDEN; i++) ss += (double) x[(size_t) r * HIDDEN + i] * x[(size_t) r * HIDDEN + i];
        double inv = 1 / std::sqrt(ss / HIDDEN + 1e-5);
        for (int i = 0; i < HIDDEN; i++)
            error = std::max(error, std::fabs(w[i] * x[(size_t) r * HIDDEN + i] * inv - got[(size_t) r * HIDDEN + i]));
    }
    cudaEvent_t a, b;
    CK(cudaEventCreate(&a));
    CK(cudaEventCreate(&b));
    CK(cudaEventRecord(a));
    for (int i = 0; i < 100; i++) dense_rms_norm<<<rows, THREADS>>>(dout, dx, dw, HIDDEN, 1e-5f);
    CK(cudaEventRecord(b));
    CK(cudaEventSynchronize(b));
    CK(cudaEventElapsedTime(ms_out, a, b));
    *ms_out /= 100;
    CK(cudaFree(dx));
    CK(cudaFree(dw));
    CK(cudaFree(dout));
    return error;
}

double rope_check(bool interleaved) {
    Rng rng{interleaved ? 11u : 13u};
    const int rows = 4;
    std::vector<int> pos = {0, 1, 17, 8191};
    std::vector<float> x((size_t) rows * HEADS * HEAD_DIM), inv(HEAD_DIM / 2);
    for (auto& e : x) e = rng.gauss();
    for (int i = 0; i < HEAD_DIM / 2; i++) inv[i] = 1.f / std::pow(500000.f, (float) (2 * i) / HEAD_DIM);
    float *dx = upload(x), *dinv = upload(inv);
    int* dpos = upload(pos);
    dense_rope<<<rows, THREADS>>>(dx, dpos, dinv, HEADS, HEAD_DIM, interleaved ? 1 : 0);
    CK(cudaDeviceSynchronize());
    std::vector<float> got = download(dx, x.size());
    double error = 0;
    const int half = HEAD_DIM / 2;
    for (int r = 0; r < rows; r++)
        for (int h = 0; h < HEADS; h++)
            for (int i = 0; i < half; i++) {
                size_t base = ((size_t) r * HEADS + h) * HEAD_DIM;
                size_t a = base + (interleaved ? 2 * i : i), b = interleaved ? a + 1 : a + half;
                double angle = (double) (float) ((float) pos[r] * inv[i]);
                double ea = x[a] * std::cos(angle) - x[b] * std::sin(angle);
                double eb = x[b] * std::cos(angle) + x[a] * std::sin(angle);
                error = std::max({error, std::fabs(ea - got[a]), std::fabs(eb - got[b])});
            }
    CK(cudaFree(dx));
    CK(cudaFree(dinv));
    CK(cudaFree(dpos));
    return error;
}

int sampler_check(float* ms_out) {
    Rng rng{17};
    const int rows = 64;
    std::vector<float> logits((size_t) rows * VOCAB);
    for (auto& e : logits) e = rng.gauss() * 4;
    std::vector<float> greedy_t(rows, 0.f), topk_t(rows, 0.8f), top_p(rows, 0.95f);
    std::vector<int> top_k(rows, 50);
    std::vector<double> u(rows);
    for (auto& e : u) e = rng.uniform();
    float *dl = upload(logits), *dgt = upload(greedy_t), *dkt = upload(topk_t), *dp = upload(top_p);
    int* dk = upload(top_k);
    double* du = upload(u);
    int* dtok;
    CK(cudaMalloc(&dtok, rows * 4));
    dense_sample<<<rows, THREADS>>>(dtok, dl, VOCAB, dgt, dk, dp, du);
    CK(cudaDeviceSynchronize());
    std::vector<int> got = download(dtok, rows);
    int wrong = 0;
    for (int r = 0; r < rows; r++) {
        const float* l = &logits[(size_t) r * VOCAB];
        int best = (int) (std::max_element(l, l + VOCAB) - l);
        wrong += got[r] != best;
    }
    cudaEvent_t a, b;
    CK(cudaEventCreate(&a));
    CK(cudaEventCreate(&b));
    CK(cudaEventRecord(a));
    for (int i = 0; i < 10; i++) dense_sample<<<rows, THREADS>>>(dtok, dl, VOCAB, dkt, dk, dp, du);
    CK(cudaEventRecord(b));
    CK(cudaEventSynchronize(b));
    CK(cudaEventElapsedTime(ms_out, a, b));
    *ms_out /= 10;
    std::vector<int> sampled = download(dtok, rows);
    for (int r = 0; r < rows; r++) wrong += sampled[r] < 0 || sampled[r] >= VOCAB;
    for (void* p : std::initializer_list<void*>{dl, dgt, dkt, dp, dk, du, dtok}) CK(cudaFree(p));
    return wrong;
}

}  // namespace

int main(int argc, char** argv) {
    std::map<int, double> torch_us;  // batch -> PyTorch eager SDPA decode, microseconds
    for (int i = 1; i + 1 < argc; i++) {
        if (std::string(argv[i]) == "--torch") {
            std::ifstream in(argv[i + 1]);
            std::string op;
            int batch, context;
            double us;
            while (in >> op >> batch >> context >> us)
                if (op == "sdpa_decode") torch_us[batch] = us;
        }
    }
    int devices = 0;
    if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
        std::printf("dense_check: no CUDA device\n");
        return 2;
    }
    cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, 0));
    std::printf("dense_check on %s (sm_%d%d, %d SMs, %.1f GiB)\n", prop.name, prop.major, prop.minor,
                prop.multiProcessorCount, prop.totalGlobalMem / 1073741824.0);

    std::printf("== (a) correctness against the host (double) ==\n");
    struct Shape {
        std::vector<int> lens, first;
        int split;
        const char* what;
    };
    std::vector<Shape> shapes = {
            {{1, 17, 2048}, {0, 0, 0}, 256, "1, 17 (partial block) and 2048 tokens, split 256"},
            {{1, 17, 2048}, {0, 0, 0}, 37, "same, split 37 (splits straddle blocks)"},
            {{300, 4093}, {300 - 128, 4093 - 1024}, 64, "sliding windows of 128 and 1024 (first visible > 0)"},
            {{8193, 8200, 5000}, {8192, 8192, 0}, 256, "Llama 4 chunks of 8192: 1 and 8 visible past the edge, 5000 before it"},
    };
    for (size_t i = 0; i < shapes.size(); i++) {
        AttentionRun r = attention(shapes[i].lens, shapes[i].first, shapes[i].split, 0, 100 + i);
        report(std::string("paged decode attention, 40/8 heads x 128: ") + shapes[i].what, r.error, 2e-4);
    }
    float rms_ms = 0, sample_ms = 0;
    report("RMSNorm, 64 rows x 5120", rms_norm_check(&rms_ms), 1e-4);
    report("RoPE rotate_half, 40 heads x 128, positions 0..8191", rope_check(false), 2e-3);
    report("RoPE interleaved (Llama 4)", rope_check(true), 2e-3);
    int wrong = sampler_check(&sample_ms);
    report("greedy sampling, 64 rows x 202048 (tokens differing from the host arg-max)", wrong, 0);

    std::printf("== (b) timing (CUDA events; one layer) ==\n");
    std::printf("| batch | context | ours: kv write + attention + combine (us) | KV read (GB/s) | PyTorch eager SDPA (us) | ours / torch speed |\n");
    std::printf("| --- | --- | --- | --- | --- | --- |\n");
    for (int batch : {1, 16, 64}) {
        std::vector<int> lens(batch, 2048), first(batch, 0);
        AttentionRun r = attention(lens, first, 256, 50, 7 + batch);
        report("timed run's output, batch " + std::to_string(batch), r.error, 2e-4);
        double us = r.ms * 1000;
        auto t = torch_us.find(batch);
        std::printf("| %d | 2048 | %.1f | %.0f | %s | %s |\n", batch, us, r.kv_bytes / (r.ms * 1e-3) / 1e9,
                    t == torch_us.end() ? "-" : std::to_string(t->second).c_str(),
                    t == torch_us.end() ? "-" : std::to_string(t->second / us).c_str());
    }
    std::printf("RMSNorm 64 x 5120: %.1f us; sampler top-k 50 / top-p 0.95, 64 rows x 202048: %.1f us\n", rms_ms * 1000,
                sample_ms * 1000);
    std::printf("RESULT: dense kernels correctness %s\n", failed ? "FAIL" : "PASS");
    return failed ? 1 : 0;
}
