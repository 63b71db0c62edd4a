package dev.moecluster.core.runner;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.within;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.moecluster.core.tensor.DType;
import java.nio.file.Path;
import java.util.SplittableRandom;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * The dense model's device kernels ({@code src/main/cuda/dense.cu}) run on the CPU through
 * {@code src/test/cuda/dense_emulator.cpp} and compared with the CPU runner: the paged cache written by
 * {@code dense_kv_write} and read by split-K decode attention against {@link KvCache} and
 * {@link SelfAttention#attend} (scattered blocks, partial blocks, GQA groups, causal, chunked and
 * sliding-window visibility, splits that do not align with blocks), RoPE of both pair layouts against
 * {@link RotaryEmbedding}, RMSNorm with and without a weight against {@link RmsNorm}. Planted faults (a
 * logical block table, a wrong kv-head count) must be caught.
 */
class DenseKernelEmulationTest {
    private static final int THREADS = 128;
    private static final int HEADS = 8;
    private static final int KV_HEADS = 2;
    private static final int HEAD_DIM = 16;
    private static final int BLOCK_TOKENS = 8;

    @TempDir
    static Path build;
    static DenseEmulator emulator;

    @BeforeAll
    static void compileEmulator() throws Exception {
        emulator = DenseEmulator.compile(build);
        assumeTrue(emulator != null, "g++ is not installed");
    }

    /** Three decoding sequences whose caches drew their blocks in turn, so every block table is scattered. */
    private record Decode(KvCache[] caches, int[] lengths, int[] firstVisible, float[] q, float[] k, float[] v,
            int[] slots, int[][] tables, int poolBlocks) {}

    private static Decode decode(long seed) {
        SplittableRandom random = new SplittableRandom(seed);
        int kvDim = KV_HEADS * HEAD_DIM;
        KvBlockPool pool = new KvBlockPool(null, DType.BF16, 1, kvDim, BLOCK_TOKENS, 32);
        int[] lengths = {1, 21, 70}; // one token; a partial third block; nine blocks minus two slots
        // visibility of the last position: causal; Llama 4 chunks of 16; a sliding window of 32
        DecoderConfig.LayerAttention[] masks = {new DecoderConfig.LayerAttention(true, false, false, 0, 0),
                new DecoderConfig.LayerAttention(true, false, false, 16, 0),
                new DecoderConfig.LayerAttention(true, false, false, 0, 32)};
        KvCache[] caches = new KvCache[lengths.length];
        int rows = 0;
        for (int s = 0; s < lengths.length; s++) {
            caches[s] = pool.newCache(lengths[s]);
            rows += lengths[s];
        }
        float[] k = new float[rows * kvDim];
        float[] v = new float[rows * kvDim];
        int[] slots = new int[rows];
        int row = 0;
        for (int p = 0; p < 70; p++) {
            for (int s = 0; s < lengths.length; s++) {
                if (p >= lengths[s]) {
                    continue;
                }
                for (int i = 0; i < kvDim; i++) {
                    k[row * kvDim + i] = (float) random.nextGaussian();
                    v[row * kvDim + i] = (float) random.nextGaussian();
                }
                caches[s].reserve(p + 1);
                caches[s].write(0, p, k, row * kvDim, v, row * kvDim);
                caches[s].advance(1);
                slots[row] = caches[s].blockTable()[p / BLOCK_TOKENS] * BLOCK_TOKENS + p % BLOCK_TOKENS;
                row++;
            }
        }
        int[][] tables = new int[lengths.length][];
        int[] first = new int[lengths.length];
        for (int s = 0; s < lengths.length; s++) {
            tables[s] = caches[s].blockTable();
            first[s] = masks[s].firstVisible(lengths[s] - 1);
        }
        assertThat(tables[2]).as("blocks drawn in turn are scattered").isNotEqualTo(new int[] {0, 1, 2, 3, 4, 5, 6, 7, 8});
        assertThat(first).containsExactly(0, 16, 38);
        float[] q = new float[lengths.length * HEADS * HEAD_DIM];
        for (int i = 0; i < q.length; i++) {
            q[i] = (float) random.nextGaussian();
        }
        return new Decode(caches, lengths, first, q, k, v, slots, tables, pool.totalBlocks());
    }

    private static float[] expected(Decode d, float scale) {
        int qDim = HEADS * HEAD_DIM;
        float[] out = new float[d.q.length];
        for (int s = 0; s < d.lengths.length; s++) {
            for (int h = 0; h < HEADS; h++) {
                SelfAttention.attend(d.q, s * qDim + h * HEAD_DIM, d.caches[s], 0, h / (HEADS / KV_HEADS) * HEAD_DIM,
                        HEAD_DIM, d.firstVisible[s], d.lengths[s] - 1, scale, out, s * qDim + h * HEAD_DIM);
            }
        }
        return out;
    }

    /** Writes the cache with dense_kv_write and runs split-K decode attention and its combine; returns the output. */
    private static DenseEmulator.Run runDecode(Decode d, int[][] tables, int kvHeads, int splitTokens, float scale,
            Path dir) throws Exception {
        int seqs = d.lengths.length;
        int maxBlocks = 0;
        for (int[] t : tables) {
            maxBlocks = Math.max(maxBlocks, t.length);
        }
        int[] flat = new int[seqs * maxBlocks];
        for (int s = 0; s < seqs; s++) {
            System.arraycopy(tables[s], 0, flat, s * maxBlocks, tables[s].length);
        }
        int[] last = new int[seqs];
        int longest = 0;
        for (int s = 0; s < seqs; s++) {
            last[s] = d.lengths[s] - 1;
            longest = Math.max(longest, d.lengths[s] - d.firstVisible[s]);
        }
        int splits = (longest + splitTokens - 1) / splitTokens;
        long cacheBytes = 2L * d.poolBlocks * BLOCK_TOKENS * KV_HEADS * HEAD_DIM;
        int rows = d.slots.length;
        return emulator.newRun(dir)
                .f32("k", d.k).f32("v", d.v).i32("slots", d.slots).zeros("k_cache", cacheBytes).zeros("v_cache", cacheBytes)
                .f32("q", d.q).i32("tables", flat).i32("first", d.firstVisible).i32("last", last)
                .zeros("part_out", 4L * seqs * HEADS * splits * HEAD_DIM).zeros("part_max", 4L * seqs * HEADS * splits)
                .zeros("part_sum", 4L * seqs * HEADS * splits).zeros("out", 4L * seqs * HEADS * HEAD_DIM)
                .launch("dense_kv_write", rows, 1, 1, THREADS, "k_cache", "v_cache", "k", "v", "slots", KV_HEADS * HEAD_DIM)
                .launch("dense_paged_decode_attention", HEADS, seqs, splits, THREADS, "part_out", "part_max", "part_sum", "q",
                        "k_cache", "v_cache", "tables", maxBlocks, "first", "last", HEADS, kvHeads, HEAD_DIM, BLOCK_TOKENS,
                        splitTokens, scale)
                .launch("dense_paged_decode_combine", HEADS, seqs, 1, THREADS, "out", "part_out", "part_max", "part_sum",
                        HEADS, HEAD_DIM, splits)
                .execute();
    }

    @ParameterizedTest(name = "{0} positions per split")
    @ValueSource(ints = {5, 16, 256})
    void pagedDecodeAttentionMatchesTheCpuRunner(int splitTokens, @TempDir Path dir) throws Exception {
        Decode d = decode(splitTokens);
        float scale = (float) Math.pow(HEAD_DIM, -0.5);
        DenseEmulator.Run run = runDecode(d, d.tables, KV_HEADS, splitTokens, scale, dir);

        // the device cache holds, at each sequence's slots, the bf16 keys and values of the CPU cache
        float[] kCache = run.bf16("k_cache");
        float[] vCache = run.bf16("v_cache");
        int kvDim = KV_HEADS * HEAD_DIM;
        for (int s = 0; s < d.lengths.length; s++) {
            for (int p = 0; p < d.lengths[s]; p++) {
                int at = (d.tables[s][p / BLOCK_TOKENS] * BLOCK_TOKENS + p % BLOCK_TOKENS) * kvDim;
                assertThat(java.util.Arrays.copyOfRange(kCache, at, at + kvDim)).containsExactly(d.caches[s].key(0, p));
                assertThat(java.util.Arrays.copyOfRange(vCache, at, at + kvDim)).containsExactly(d.caches[s].value(0, p));
            }
        }
        assertThat(run.f32("out")).containsExactly(expected(d, scale), within(2e-5f));
    }

    @Test
    void plantedFaultsInTheBlockTableOrTheGroupsAreCaught(@TempDir Path dir) throws Exception {
        Decode d = decode(7);
        float scale = (float) Math.pow(HEAD_DIM, -0.5);
        float[] expected = expected(d, scale);
        int[][] logical = new int[d.tables.length][];
        for (int s = 0; s < logical.length; s++) {
            logical[s] = new int[d.tables[s].length];
            for (int b = 0; b < logical[s].length; b++) {
                logical[s][b] = b;
            }
        }
        assertThat(maxDifference(runDecode(d, logical, KV_HEADS, 16, scale, dir.resolve("a")).f32("out"), expected))
                .isGreaterThan(0.1f);
        // one kv head for all query heads reads the wrong head and the wrong row stride
        assertThat(maxDifference(runDecode(d, d.tables, 1, 16, scale, dir.resolve("b")).f32("out"), expected))
                .isGreaterThan(0.1f);
    }

    @ParameterizedTest(name = "interleaved {0}")
    @ValueSource(booleans = {false, true})
    void ropeRotatesTheSamePairsAsTheCpuRunner(boolean interleaved, @TempDir Path dir) throws Exception {
        // llama3 scaling, so the inverse frequencies are not a plain power series
        DecoderConfig.Rope spec = new DecoderConfig.Rope("llama3", 500_000, 8, 1, 4, 64, interleaved);
        RotaryEmbedding rope = new RotaryEmbedding(spec, HEAD_DIM);
        float[] inverse = RotaryEmbedding.inverseFrequencies(spec, HEAD_DIM);
        SplittableRandom random = new SplittableRandom(3);
        int[] positions = {0, 1, 17, 4095};
        int width = HEADS * HEAD_DIM;
        float[] x = new float[positions.length * width];
        for (int i = 0; i < x.length; i++) {
            x[i] = (float) random.nextGaussian();
        }
        float[] expected = x.clone();
        for (int r = 0; r < positions.length; r++) {
            for (int h = 0; h < HEADS; h++) {
                rope.apply(expected, r * width + h * HEAD_DIM, positions[r]);
            }
        }
        float[] got = emulator.newRun(dir).f32("x", x).i32("positions", positions).f32("inv", inverse)
                .launch("dense_rope", positions.length, 1, 1, THREADS, "x", "positions", "inv", HEADS, HEAD_DIM,
                        interleaved ? 1 : 0)
                .execute().f32("x");
        assertThat(got).containsExactly(expected, within(1e-5f));
        assertThat(maxDifference(got, x)).as("the rotation did something").isGreaterThan(0.1f);
    }

    @Test
    void rmsNormWithAndWithoutAWeightMatchesTheCpuRunner(@TempDir Path dir) throws Exception {
        SplittableRandom random = new SplittableRandom(5);
        int rows = 3;
        int width = 300; // not a multiple of the block's threads
        float[] x = new float[rows * width];
        float[] weight = new float[width];
        for (int i = 0; i < x.length; i++) {
            x[i] = (float) (random.nextGaussian() * 3);
        }
        for (int i = 0; i < width; i++) {
            weight[i] = (float) random.nextDouble(0.5, 1.5);
        }
        DenseEmulator.Run run = emulator.newRun(dir).f32("x", x).f32("w", weight)
                .zeros("weighted", 4L * x.length).zeros("plain", 4L * x.length)
                .launch("dense_rms_norm", rows, 1, 1, THREADS, "weighted", "x", "w", width, 1e-5f)
                .launch("dense_rms_norm", rows, 1, 1, THREADS, "plain", "x", null, width, 1e-5f)
                .execute();
        float[] weighted = RmsNorm.rows(x, rows, width, weight, 1e-5f);
        float[] plain = RmsNorm.rows(x, rows, width, null, 1e-5f);
        assertThat(run.f32("weighted")).containsExactly(weighted, within(1e-5f));
        assertThat(run.f32("plain")).containsExactly(plain, within(1e-5f));
    }

    private static float maxDifference(float[] a, float[] b) {
        float max = 0;
        for (int i = 0; i < a.length; i++) {
            max = Math.max(max, Math.abs(a[i] - b[i]));
        }
        return max;
    }
}
