package dev.moecluster.bench;

import dev.moecluster.control.wire.ArrayPool;
import dev.moecluster.control.wire.DataPlaneMarshalling;
import dev.moecluster.control.wire.ReceivedBatch;
import dev.moecluster.control.wire.WireTensors;
import dev.moecluster.core.tensor.DType;
import dev.moecluster.core.tensor.RowBatch;
import dev.moecluster.proto.ExpertBatch;
import dev.moecluster.proto.ExpertResult;
import dev.moecluster.proto.ExpertSlice;
import io.grpc.Drainable;
import io.grpc.KnownLength;
import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.OutputStream;
import java.lang.foreign.Arena;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;

/**
 * The host half of a {@code cuda} worker's round, timed without a GPU: the calls the worker and the
 * cuda backend make on the CPU, in their order, with plain off-heap memory standing in for pinned
 * buffers and a prefilled "downloaded" buffer standing in for the kernels. Per batch: parse the
 * received message into a pooled array (one copy out of the transport's buffers, activations
 * aliased), check shapes and finiteness on the wire bytes, gather the rows into the staging buffer,
 * write each slice's output from the downloaded rows in the wire dtype into a pooled result array,
 * and serialize the result into a reused buffer as gRPC's framer does into Netty's (a copy).
 */
public final class WorkerHostPath {
    /**
     * What one run measured: wall time and this thread's CPU time per row (the loop runs on one
     * thread, so its CPU time is what the host half costs even on a machine shared with other work).
     */
    public record Report(int hidden, int rowsPerBatch, int experts, long batches, double nanosPerRow, double cpuNanosPerRow) {}

    private WorkerHostPath() {}

    /** A received message as gRPC hands it over: a stream that knows its length. */
    private static final class ReceivedMessage extends ByteArrayInputStream implements KnownLength {
        ReceivedMessage(byte[] bytes) {
            super(bytes);
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
        ByteArrayOutputStream wireBytes = new ByteArrayOutputStream();
        b.build().writeTo(wireBytes);
        byte[] received = wireBytes.toByteArray();

        try (Arena arena = Arena.ofConfined()) {
            RowBatch staging = RowBatch.allocate(arena, DType.BF16, rowsPerBatch, hidden);
            RowBatch downloaded = RowBatch.allocate(arena, DType.BF16, rowsPerBatch, hidden); // the down kernel writes bf16
            for (int r = 0; r < rowsPerBatch; r++) {
                downloaded.putRow(r, row, 0, 0.5f);
            }
            ArrayPool arrays = new ArrayPool(64L << 20);
            var receiving = DataPlaneMarshalling.receivingMethod(arrays);
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
                // worker: parse (one copy into a pooled array), validate on the wire bytes
                ReceivedBatch receivedBatch = receiving.parseRequest(new ReceivedMessage(received));
                ExpertBatch batch = receivedBatch.batch();
                RowBatch x = WireTensors.rows(batch.getActivations(), "activations");
                long total = 0;
                for (ExpertSlice s : batch.getSlicesList()) {
                    total += s.getRows();
                }
                if (total != x.rows() || x.firstNonFinite() >= 0) {
                    throw new IllegalStateException("bad batch");
                }
                // cuda backend, submit: slices gathered into the staging (pinned) buffer, grouped by expert
                List<RowBatch> inputs = new ArrayList<>(experts);
                byte[] outArray = arrays.take((int) RowBatch.wireBytes(x.dtype(), x.rows(), hidden));
                RowBatch out = RowBatch.over(outArray, x.dtype(), x.rows(), hidden);
                List<RowBatch> outputs = new ArrayList<>(experts);
                int at = 0;
                for (int sr : sliceRows) {
                    inputs.add(x.slice(at, sr));
                    outputs.add(out.slice(at, sr));
                    at += sr;
                }
                at = 0;
                for (RowBatch in : inputs) {
                    staging.copyFrom(in, at);
                    at += in.rows();
                }
                // cuda backend, await: each output written from the downloaded rows, in the wire dtype
                at = 0;
                for (RowBatch o : outputs) {
                    o.copyFrom(downloaded.slice(at, o.rows()), 0);
                    at += o.rows();
                }
                // worker: the result wraps the outputs without a copy and is serialized
                ExpertResult result = ExpertResult.newBuilder().setId(batch.getId()).setOutputs(WireTensors.tensor(out)).build();
                // what gRPC's framer does with the stream: drain it into the transport's buffers
                sink.reset();
                checksum += ((Drainable) DataPlaneMarshalling.computeMethod().streamResponse(result)).drainTo(sink);
                receivedBatch.release();
                arrays.give(outArray);
            }
            double nanos = System.nanoTime() - start;
            double cpuNanos = threads.getCurrentThreadCpuTime() - cpuStart;
            if (checksum == 0) {
                throw new IllegalStateException("nothing serialized");
            }
            double rows = (double) batches * rowsPerBatch;
            return new Report(hidden, rowsPerBatch, experts, batches, nanos / rows, cpuNanos / rows);
        }
    }
}
