package dev.moecluster.bench;

import dev.moecluster.control.wire.BufferPool;
import dev.moecluster.control.wire.HostAllocator;
import dev.moecluster.control.wire.DataPlaneMarshalling;
import dev.moecluster.control.wire.ReceivedBatch;
import dev.moecluster.control.wire.WireTensors;
import dev.moecluster.core.tensor.DType;
import dev.moecluster.core.tensor.RowBatch;
import dev.moecluster.proto.ExpertBatch;
import dev.moecluster.proto.ExpertResult;
import dev.moecluster.proto.ExpertSlice;
import io.grpc.Drainable;
import io.grpc.HasByteBuffer;
import io.grpc.KnownLength;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.util.SplittableRandom;

/**
 * The host half of a {@code cuda} worker's round, timed without a GPU: the calls the worker and the
 * cuda backend make on the CPU, in their order, with plain off-heap memory standing in for pinned
 * memory and the device's copy engines doing nothing. Per batch: parse the received message out of
 * the transport's direct buffers (16 KiB HTTP/2 frames) into a pooled native buffer (one copy,
 * activations aliased), check shapes and finiteness on the wire bytes, hand the slices to the
 * device (bf16 rows are uploaded from where they were received and the outputs downloaded into the
 * pooled result buffer by DMA, so the CPU does nothing here; another wire dtype is converted through
 * the staging buffers on the CPU, as the backend does), and serialize the result out of native
 * memory into a reused buffer as gRPC's framer does into Netty's. Next to it, in the same run, the
 * ceiling: one plain copy of a batch's rows between two native buffers.
 */
public final class WorkerHostPath {
    /**
     * What one run measured: wall time and this thread's CPU time per row (the loop runs on one
     * thread, so its CPU time is what the host half costs even on a machine shared with other work),
     * and the time of one plain copy of a row, the memory's ceiling.
     */
    public record Report(int hidden, int rowsPerBatch, int experts, long batches, double nanosPerRow, double cpuNanosPerRow,
            double copyNanosPerRow) {
        /** Host time per row in plain copies of the row. */
        public double copies() {
            return cpuNanosPerRow / copyNanosPerRow;
        }
    }

    private static final int FRAME_BYTES = 16 << 10;

    private WorkerHostPath() {}

    /** A received message as gRPC's Netty transport hands it over: direct buffers, a frame each, with a known length. */
    private static final class ReceivedMessage extends InputStream implements KnownLength, HasByteBuffer {
        private final ByteBuffer[] frames;
        private int frame;

        ReceivedMessage(ByteBuffer[] frames) {
            this.frames = frames;
            for (ByteBuffer f : frames) {
                f.rewind();
            }
        }

        @Override
        public int available() {
            int n = 0;
            for (int i = frame; i < frames.length; i++) {
                n += frames[i].remaining();
            }
            return n;
        }

        @Override
        public int read() {
            while (frame < frames.length && !frames[frame].hasRemaining()) {
                frame++;
            }
            return frame < frames.length ? frames[frame].get() & 0xff : -1;
        }

        @Override
        public long skip(long n) {
            long left = n;
            while (left > 0 && frame < frames.length) {
                int k = (int) Math.min(left, frames[frame].remaining());
                frames[frame].position(frames[frame].position() + k);
                left -= k;
                if (!frames[frame].hasRemaining()) {
                    frame++;
                }
            }
            return n - left;
        }

        @Override
        public boolean byteBufferSupported() {
            return true;
        }

        @Override
        public ByteBuffer getByteBuffer() {
            while (frame < frames.length && !frames[frame].hasRemaining()) {
                frame++;
            }
            return frame < frames.length ? frames[frame].slice() : null;
        }
    }

    /** Stands in for the transport's buffers: every byte written is copied, into one reused array. */
    private static final class FramerSink extends OutputStream {
        private final byte[] buffer;
        private int size;

        FramerSink(int capacity) {
            buffer = new byte[capacity];
        }

        void reset() {
            size = 0;
        }

        @Override
        public void write(int b) {
            buffer[size++] = (byte) b;
        }

        @Override
        public void write(byte[] b, int off, int len) {
            System.arraycopy(b, off, buffer, size, len);
            size += len;
        }
    }

    public static Report run(int hidden, int rowsPerBatch, int experts, int batches, DType wire) throws IOException {
        SplittableRandom random = new SplittableRandom(1);
        float[] row = new float[hidden];
        for (int i = 0; i < hidden; i++) {
            row[i] = (float) random.nextGaussian();
        }
        RowBatch act = RowBatch.onHeap(wire, rowsPerBatch, hidden);
        for (int r = 0; r < rowsPerBatch; r++) {
            act.putRow(r, row, 0, 1f);
        }
        ExpertBatch.Builder b = ExpertBatch.newBuilder().setId(1).setLayer(1).setActivations(WireTensors.tensor(act));
        int[] sliceRows = new int[experts];
        for (int e = 0; e < experts; e++) {
            sliceRows[e] = rowsPerBatch / experts + (e < rowsPerBatch % experts ? 1 : 0);
            b.addSlices(ExpertSlice.newBuilder().setExpert(e).setRows(sliceRows[e]));
        }
        byte[] received = b.build().toByteArray();
        ByteBuffer[] frames = new ByteBuffer[(received.length + FRAME_BYTES - 1) / FRAME_BYTES];
        for (int f = 0; f < frames.length; f++) {
            int from = f * FRAME_BYTES;
            int n = Math.min(FRAME_BYTES, received.length - from);
            frames[f] = ByteBuffer.allocateDirect(n).put(received, from, n).flip();
        }
        boolean dma = wire == DType.BF16; // the device reads and writes bf16 rows where they lie

        try (Arena arena = Arena.ofConfined()) {
            RowBatch staging = RowBatch.allocate(arena, DType.BF16, rowsPerBatch, hidden);
            RowBatch downloaded = RowBatch.allocate(arena, DType.BF16, rowsPerBatch, hidden); // the down kernel writes bf16
            for (int r = 0; r < rowsPerBatch; r++) {
                downloaded.putRow(r, row, 0, 0.5f);
            }
            BufferPool buffers = new BufferPool(HostAllocator.OFF_HEAP);
            var receiving = DataPlaneMarshalling.receivingMethod(buffers);
            FramerSink sink = new FramerSink(received.length + 1024);
            long checksum = 0;
            int warm = Math.max(20, batches / 5);
            java.lang.management.ThreadMXBean threads = java.lang.management.ManagementFactory.getThreadMXBean();
            long start = 0;
            long cpuStart = 0;
            for (int i = 0; i < warm + batches; i++) {
                if (i == warm) {
                    start = System.nanoTime();
                    cpuStart = threads.getCurrentThreadCpuTime();
                }
                // worker: parse (one copy into a pooled buffer), validate on the wire bytes
                ReceivedBatch receivedBatch = receiving.parseRequest(new ReceivedMessage(frames));
                ExpertBatch batch = receivedBatch.batch();
                RowBatch x = WireTensors.rows(batch.getActivations(), "activations");
                long total = 0;
                for (ExpertSlice s : batch.getSlicesList()) {
                    total += s.getRows();
                }
                if (total != x.rows() || x.firstNonFinite() >= 0) {
                    throw new IllegalStateException("bad batch");
                }
                MemorySegment outBuffer = buffers.take(RowBatch.wireBytes(x.dtype(), x.rows(), hidden));
                RowBatch out = RowBatch.over(outBuffer, x.dtype(), x.rows(), hidden);
                if (!dma) {
                    // cuda backend, submit: slices converted into the staging buffer; await: outputs converted back
                    int at = 0;
                    for (int sr : sliceRows) {
                        staging.copyFrom(x.slice(at, sr), at);
                        at += sr;
                    }
                    at = 0;
                    for (int sr : sliceRows) {
                        out.slice(at, sr).copyFrom(downloaded.slice(at, sr), 0);
                        at += sr;
                    }
                }
                // worker: the result wraps the outputs without a copy and is serialized
                ExpertResult result = ExpertResult.newBuilder().setId(batch.getId()).setOutputs(WireTensors.tensor(out)).build();
                // what gRPC's framer does with the stream: drain it into the transport's buffers
                sink.reset();
                checksum += ((Drainable) DataPlaneMarshalling.computeMethod().streamResponse(result)).drainTo(sink);
                receivedBatch.release();
                buffers.give(outBuffer);
            }
            double nanos = System.nanoTime() - start;
            double cpuNanos = threads.getCurrentThreadCpuTime() - cpuStart;
            if (checksum == 0) {
                throw new IllegalStateException("nothing serialized");
            }
            double rows = (double) batches * rowsPerBatch;
            return new Report(hidden, rowsPerBatch, experts, batches, nanos / rows, cpuNanos / rows,
                    copyNanosPerRow(arena, RowBatch.wireBytes(wire, rowsPerBatch, hidden), warm, batches) / rowsPerBatch);
        }
    }

    /** This thread's CPU time of one plain copy of {@code bytes} between native buffers, as the pool hands them out. */
    private static double copyNanosPerRow(Arena arena, long bytes, int warm, int copies) {
        MemorySegment[] from = {arena.allocate(bytes, 64), arena.allocate(bytes, 64)};
        MemorySegment[] to = {arena.allocate(bytes, 64), arena.allocate(bytes, 64)};
        java.lang.management.ThreadMXBean threads = java.lang.management.ManagementFactory.getThreadMXBean();
        long cpuStart = 0;
        for (int i = 0; i < warm + copies; i++) {
            if (i == warm) {
                cpuStart = threads.getCurrentThreadCpuTime();
            }
            MemorySegment.copy(from[i & 1], 0, to[i & 1], 0, bytes);
        }
        return (double) (threads.getCurrentThreadCpuTime() - cpuStart) / copies;
    }
}
