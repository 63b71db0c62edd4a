package dev.moecluster.worker.cuda;

import static org.assertj.core.api.Assertions.assertThat;

import dev.moecluster.core.tensor.DType;
import dev.moecluster.core.tensor.RowBatch;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/**
 * A cuda round's host-side data movement, run without a GPU: the planned copies are carried out on a
 * byte array standing in for device memory, an identity "kernel" turns the packed input rows into
 * the output rows, and every output must then hold its input's rows passed through bf16, whatever
 * memory and dtype each side was in. That checks the device offsets, the merging of runs, the
 * staging conversions and which outputs the downloads write.
 */
class RoundCopiesTest {
    private static final int HIDDEN = 24;

    @Test
    void everyRowReachesItsOutputWhetherMovedByDmaOrStaged() {
        try (Arena arena = Arena.ofConfined()) {
            // "pinned" buffers: the worker's received message and result, and the backend's staging buffers
            Map<String, MemorySegment> buffers = Map.of(
                    "received", arena.allocate(4096, 64), "result", arena.allocate(4096, 64),
                    "stagingIn", arena.allocate(4096, 64), "stagingOut", arena.allocate(4096, 64));
            SplittableRandom random = new SplittableRandom(7);
            List<RowBatch> inputs = new ArrayList<>();
            List<RowBatch> outputs = new ArrayList<>();
            MemorySegment received = buffers.get("received");
            MemorySegment result = buffers.get("result");
            long rowBytes = 2L * HIDDEN;
            // two slices back to back in the received message: one run
            inputs.add(filled(RowBatch.over(received.asSlice(0), DType.BF16, 3, HIDDEN), random));
            inputs.add(filled(RowBatch.over(received.asSlice(3 * rowBytes), DType.BF16, 2, HIDDEN), random));
            outputs.add(RowBatch.over(result.asSlice(0), DType.BF16, 3, HIDDEN));
            outputs.add(RowBatch.over(result.asSlice(3 * rowBytes), DType.BF16, 2, HIDDEN));
            // heap rows, and an fp8 slice in pinned memory: staged (converted) both ways
            inputs.add(filled(RowBatch.onHeap(DType.BF16, 4, HIDDEN), random));
            outputs.add(RowBatch.onHeap(DType.F32, 4, HIDDEN));
            inputs.add(filled(RowBatch.over(received.asSlice(1024), DType.FP8_E4M3, 2, HIDDEN), random));
            outputs.add(RowBatch.over(result.asSlice(1024), DType.FP8_E4M3, 2, HIDDEN));
            // an expert with no rows, then a slice at an odd address (a bytes field after its tag and length)
            inputs.add(RowBatch.over(received.asSlice(2001), DType.BF16, 0, HIDDEN));
            outputs.add(RowBatch.over(result.asSlice(2001), DType.BF16, 0, HIDDEN));
            inputs.add(filled(RowBatch.over(received.asSlice(2001), DType.BF16, 5, HIDDEN), random));
            outputs.add(RowBatch.over(result.asSlice(2001), DType.BF16, 5, HIDDEN));
            int rows = inputs.stream().mapToInt(RowBatch::rows).sum();
            RowBatch stagedIn = RowBatch.over(buffers.get("stagingIn"), DType.BF16, rows, HIDDEN);
            RowBatch stagedOut = RowBatch.over(buffers.get("stagingOut"), DType.BF16, rows, HIDDEN);
            for (RowBatch out : outputs) {
                out.data().fill((byte) 0x7f); // NaN in bf16 and f32, e4m3's NaN code: unwritten rows show
            }

            RoundCopies<String> copies = RoundCopies.plan(inputs, outputs, memory -> lyingIn(memory, buffers),
                    "stagingIn", stagedIn, "stagingOut", stagedOut);

            byte[] device = new byte[(int) (rows * rowBytes)];
            for (Transfers.Copy<String> c : copies.uploads().copies()) {
                MemorySegment.copy(host(c, buffers), 0, MemorySegment.ofArray(device), c.deviceOffset(), c.bytes());
            }
            // the identity kernel: outputs are the packed input rows
            for (Transfers.Copy<String> c : copies.downloads().copies()) {
                MemorySegment.copy(MemorySegment.ofArray(device), c.deviceOffset(), host(c, buffers), 0, c.bytes());
            }
            copies.writeStagedOutputs();

            for (int s = 0; s < inputs.size(); s++) {
                RowBatch in = inputs.get(s);
                RowBatch out = outputs.get(s);
                RowBatch viaBf16 = RowBatch.onHeap(DType.BF16, in.rows(), HIDDEN);
                viaBf16.copyFrom(in, 0);
                RowBatch expected = RowBatch.onHeap(out.dtype(), out.rows(), HIDDEN);
                expected.copyFrom(viaBf16, 0);
                assertThat(out.data().toArray(java.lang.foreign.ValueLayout.JAVA_BYTE)).as("slice %d data", s)
                        .isEqualTo(expected.data().toArray(java.lang.foreign.ValueLayout.JAVA_BYTE));
                assertThat(out.scales().toArray(java.lang.foreign.ValueLayout.JAVA_BYTE)).as("slice %d scales", s)
                        .isEqualTo(expected.scales().toArray(java.lang.foreign.ValueLayout.JAVA_BYTE));
            }
            // the pinned bf16 slices moved by DMA both ways: 10 rows up and 10 rows down
            assertThat(copies.directBytes()).isEqualTo(2 * 10 * rowBytes);
            assertThat(copies.bf16Staged()).as("the heap bf16 slice was staged").isTrue();
            // up: the received run of 5 rows, the two staged slices (adjacent in staging and on the device), the odd slice
            assertThat(copies.uploads().copies()).extracting(Transfers.Copy::buffer)
                    .containsExactly("received", "stagingIn", "received");
            assertThat(copies.uploads().copies()).extracting(Transfers.Copy::bytes)
                    .containsExactly(5 * rowBytes, 6 * rowBytes, 5 * rowBytes);
            assertThat(copies.downloads().copies()).extracting(Transfers.Copy::buffer)
                    .containsExactly("result", "stagingOut", "result");
        }
    }

    private static RowBatch filled(RowBatch b, SplittableRandom random) {
        float[] row = new float[HIDDEN];
        for (int r = 0; r < b.rows(); r++) {
            for (int k = 0; k < HIDDEN; k++) {
                row[k] = (float) random.nextGaussian();
            }
            b.putRow(r, row, 0, 1f);
        }
        return b;
    }

    /** As PinnedHost.buffer: the buffer {@code memory} lies in, whole, or null (heap memory). */
    private static String lyingIn(MemorySegment memory, Map<String, MemorySegment> buffers) {
        if (!memory.isNative()) {
            return null;
        }
        for (Map.Entry<String, MemorySegment> e : buffers.entrySet()) {
            long start = e.getValue().address();
            if (memory.address() >= start && memory.address() + memory.byteSize() <= start + e.getValue().byteSize()) {
                return e.getKey();
            }
        }
        return null;
    }

    private static MemorySegment host(Transfers.Copy<String> c, Map<String, MemorySegment> buffers) {
        MemorySegment buffer = buffers.get(c.buffer());
        return buffer.asSlice(c.hostAddress() - buffer.address(), c.bytes());
    }
}
