package dev.moecluster.core.runner;

import java.util.List;

/**
 * The rows of one forward step: every new token of every sequence in the batch, in batch order,
 * with its sequence, position and rotary angles (computed once and shared by all layers).
 */
final class ForwardStep {
    final int rows;
    final int[] rowSequence;
    final int[] rowPosition;
    final KvCache[] caches;
    final int[] lastRow;
    final float[] cos;
    final float[] sin;
    final int half;

    ForwardStep(List<SequenceChunk> batch, RotaryEmbedding rope) {
        int total = 0;
        for (SequenceChunk chunk : batch) {
            total += chunk.length();
        }
        rows = total;
        rowSequence = new int[rows];
        rowPosition = new int[rows];
        caches = new KvCache[batch.size()];
        lastRow = new int[batch.size()];
        half = rope.headDim() / 2;
        cos = new float[rows * half];
        sin = new float[rows * half];
        int r = 0;
        for (int s = 0; s < batch.size(); s++) {
            SequenceChunk chunk = batch.get(s);
            caches[s] = chunk.cache();
            int start = chunk.cache().length();
            for (int t = 0; t < chunk.length(); t++, r++) {
                rowSequence[r] = s;
                rowPosition[r] = start + t;
                rope.angles(start + t, cos, sin, r * half);
            }
            lastRow[s] = r - 1;
        }
    }

    KvCache cache(int row) {
        return caches[rowSequence[row]];
    }
}
