package dev.moecluster.worker.cuda;

import dev.moecluster.core.tensor.DType;
import dev.moecluster.core.tensor.RowBatch;
import java.lang.foreign.MemorySegment;
import java.util.List;
import java.util.function.Function;

/**
 * The host side of one round's data movement, without the device: which rows go up and come down by
 * DMA from and to where they lie, and which pass through the staging buffers. On the device the
 * rows are packed in input order ({@code 2 · hidden} bytes a row, bf16), as the launch plan reads
 * them. A bf16 row that lies in pinned memory ({@code pinned} finds its buffer) is uploaded from
 * there; any other (heap memory, another wire dtype) is converted into the staging input at its
 * device offset and uploaded from there. Likewise an output in pinned bf16 memory is written by its
 * download; any other is downloaded into the staging output and written from it, in its dtype, by
 * {@link #writeStagedOutputs} once the download is done.
 *
 * @param <B> what a host range lies in (a pinned buffer)
 */
final class RoundCopies<B> {
    private final Transfers<B> uploads = new Transfers<>();
    private final Transfers<B> downloads = new Transfers<>();
    private final List<RowBatch> outputs;
    private final boolean[] downloadWrites;
    private final RowBatch stagedOut;
    private long directBytes;
    private boolean bf16Staged;

    private RoundCopies(List<RowBatch> outputs, RowBatch stagedOut) {
        this.outputs = outputs;
        this.downloadWrites = new boolean[outputs.size()];
        this.stagedOut = stagedOut;
    }

    /**
     * Plans a round of {@code inputs} (converting the staged ones into {@code stagedIn}, which lies in
     * {@code inBuffer}) and {@code outputs} (the staged ones to come from {@code stagedOut}, in
     * {@code outBuffer}); both staging batches are bf16 and hold the round's rows.
     */
    static <B> RoundCopies<B> plan(List<RowBatch> inputs, List<RowBatch> outputs, Function<MemorySegment, B> pinned,
            B inBuffer, RowBatch stagedIn, B outBuffer, RowBatch stagedOut) {
        RoundCopies<B> c = new RoundCopies<>(outputs, stagedOut);
        long rowBytes = 2L * stagedIn.width();
        int at = 0;
        for (RowBatch in : inputs) {
            B direct = in.dtype() == DType.BF16 ? pinned.apply(in.data()) : null;
            if (direct != null) {
                c.directBytes += in.data().byteSize();
                c.uploads.add(direct, in.data(), at * rowBytes);
            } else {
                c.bf16Staged |= in.dtype() == DType.BF16 && in.rows() > 0;
                stagedIn.copyFrom(in, at);
                c.uploads.add(inBuffer, stagedIn.slice(at, in.rows()).data(), at * rowBytes);
            }
            at += in.rows();
        }
        at = 0;
        for (int o = 0; o < outputs.size(); o++) {
            RowBatch out = outputs.get(o);
            B direct = out.dtype() == DType.BF16 ? pinned.apply(out.data()) : null;
            c.downloadWrites[o] = direct != null;
            if (direct != null) {
                c.directBytes += out.data().byteSize();
                c.downloads.add(direct, out.data(), at * rowBytes);
            } else {
                c.downloads.add(outBuffer, stagedOut.slice(at, out.rows()).data(), at * rowBytes);
            }
            at += out.rows();
        }
        return c;
    }

    /** Host → device copies, in order. */
    Transfers<B> uploads() {
        return uploads;
    }

    /** Device → host copies, in order. */
    Transfers<B> downloads() {
        return downloads;
    }

    /** Bytes moved from and to where the rows lie, both ways: none of them passed through staging. */
    long directBytes() {
        return directBytes;
    }

    /** Whether a bf16 input had to be staged (it did not lie in pinned memory). */
    boolean bf16Staged() {
        return bf16Staged;
    }

    /** After the downloads: writes each output its download did not write, from the staging output in its dtype. */
    void writeStagedOutputs() {
        int at = 0;
        for (int o = 0; o < outputs.size(); o++) {
            RowBatch out = outputs.get(o);
            if (!downloadWrites[o]) {
                out.copyFrom(stagedOut.slice(at, out.rows()), 0);
            }
            at += out.rows();
        }
    }
}
