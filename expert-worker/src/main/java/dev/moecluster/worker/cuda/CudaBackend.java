package dev.moecluster.worker.cuda;

import static java.util.Objects.requireNonNull;
import static jcuda.driver.JCudaDriver.cuCtxSynchronize;
import static jcuda.driver.JCudaDriver.cuEventCreate;
import static jcuda.driver.JCudaDriver.cuEventDestroy;
import static jcuda.driver.JCudaDriver.cuEventElapsedTime;
import static jcuda.driver.JCudaDriver.cuEventQuery;
import static jcuda.driver.JCudaDriver.cuEventRecord;
import static jcuda.driver.JCudaDriver.cuEventSynchronize;
import static jcuda.driver.JCudaDriver.cuMemcpyDtoHAsync;
import static jcuda.driver.JCudaDriver.cuMemcpyHtoDAsync;
import static jcuda.driver.JCudaDriver.cuMemsetD16Async;
import static jcuda.driver.JCudaDriver.cuStreamCreate;
import static jcuda.driver.JCudaDriver.cuStreamDestroy;
import static jcuda.driver.JCudaDriver.cuStreamSynchronize;
import static jcuda.driver.JCudaDriver.cuStreamWaitEvent;

import dev.moecluster.control.wire.HostAllocator;
import dev.moecluster.core.moe.ExpertWeights;
import dev.moecluster.core.tensor.DType;
import dev.moecluster.core.tensor.RowBatch;
import dev.moecluster.worker.BackendMemory;
import dev.moecluster.worker.ExpertBackend;
import dev.moecluster.worker.Round;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.ArrayBlockingQueue;
import java.util.concurrent.BlockingQueue;
import java.util.logging.Level;
import java.util.logging.Logger;
import jcuda.driver.CUevent;
import jcuda.driver.CUresult;
import jcuda.driver.CUevent_flags;
import jcuda.driver.CUstream;
import jcuda.driver.CUstream_flags;

/**
 * Runs experts on an NVIDIA GPU through JCuda's driver API and this module's own tensor-core kernels
 * ({@code moe_ffn.cu}, no cuBLAS; on compute capability 9.0 the wgmma/TMA kernels of {@code moe_ffn_sm90.cu}
 * for bf16 weights). Expert weights are uploaded when the worker {@linkplain #load loads} an expert, as bf16,
 * or for an FP8 checkpoint as its e4m3 codes and per-channel scales (one byte a weight: the kernels widen
 * the codes to bf16 as they load a tile), and stay resident until {@link #unload} frees them
 * ({@link ResidentExperts} keeps that account, through the driver calls of {@link DeviceMemoryDriver}). A round
 * copies its rows up on an upload stream, grouped by expert, runs the gate/up and down kernels on a
 * compute stream (one grouped launch each for all the round's experts, one pair per weight dtype
 * should a round mix them) and copies the outputs down on a third stream. The worker receives
 * batches into this backend's pinned memory ({@link #hostAllocator}, {@link PinnedHost}) and builds
 * results there, so bf16 rows go up from the received message and come down into the result by DMA,
 * one copy per run of adjacent rows ({@link Transfers}), without the CPU touching them; other rows
 * (heap memory, or another wire dtype) pass through pinned staging buffers, converted on the CPU.
 * Two sets of buffers alternate, so one round's upload overlaps the previous round's compute
 * when rounds are {@linkplain #submit(Round) submitted} ahead of their results.
 *
 * <p>Thread-safe. Device work is enqueued under one lock; waiting for results is not.
 */
public final class CudaBackend implements ExpertBackend {
    private static final Logger LOG = Logger.getLogger(CudaBackend.class.getName());

    private static final short BF16_NAN_BITS = (short) 0xffff;

    private final CudaDevice device;
    private final FfnKernels kernels;
    private final CUstream uploadStream = new CUstream();
    private final CUstream computeStream = new CUstream();
    private final CUstream downloadStream = new CUstream();
    private final JCudaMemoryDriver memoryDriver;
    private final PinnedHost pinned;
    private final ResidentExperts resident;
    private final List<BatchBuffers> allBuffers = new ArrayList<>();
    private final BlockingQueue<BatchBuffers> freeBuffers = new ArrayBlockingQueue<>(2);
    private volatile boolean closed;
    private volatile TileConfig forcedTile;
    private volatile boolean poisonOutputs;
    private volatile boolean warnedStaged;
    private final java.util.concurrent.atomic.AtomicLong kernelNanos = new java.util.concurrent.atomic.AtomicLong();

    private CudaBackend(CudaDevice device) {
        this.device = device;
        this.kernels = FfnKernels.load(device);
        CudaFailure.check(cuStreamCreate(uploadStream, CUstream_flags.CU_STREAM_NON_BLOCKING), "cuStreamCreate");
        CudaFailure.check(cuStreamCreate(computeStream, CUstream_flags.CU_STREAM_NON_BLOCKING), "cuStreamCreate");
        CudaFailure.check(cuStreamCreate(downloadStream, CUstream_flags.CU_STREAM_NON_BLOCKING), "cuStreamCreate");
        this.memoryDriver = new JCudaMemoryDriver(device, uploadStream);
        this.resident = new ResidentExperts(memoryDriver, kernels.hopper());
        this.pinned = new PinnedHost(device);
        for (int i = 0; i < 2; i++) {
            BatchBuffers b = new BatchBuffers(pinned);
            allBuffers.add(b);
            freeBuffers.add(b);
        }
    }

    /** Opens device 0. */
    public static CudaBackend open() {
        return open(0);
    }

    /**
     * Opens device {@code ordinal}: retains its primary context and loads the kernels.
     *
     * @throws CudaFailure if the machine has no usable device (the message says why) or a driver call fails
     */
    public static CudaBackend open(int ordinal) {
        CudaDevice device = CudaDevice.open(ordinal);
        try {
            CudaBackend backend = new CudaBackend(device);
            LOG.info(() -> String.format(Locale.ROOT, "cuda backend on device %d: %s; kernels loaded in %.0f ms",
                    ordinal, device.properties().describe(), backend.kernels.loadNanos() / 1e6));
            return backend;
        } catch (RuntimeException e) {
            device.close();
            throw e;
        }
    }

    @Override
    public String name() {
        return "cuda";
    }

    @Override
    public void load(ExpertWeights expert) {
        preload(expert);
    }

    /** Pinned memory: the device copies a round's rows from where the worker received them and its outputs into the result. */
    @Override
    public HostAllocator hostAllocator() {
        return pinned;
    }

    /** The kernels' time of every round awaited so far, from the events around each round's launches. */
    @Override
    public long deviceNanos() {
        return kernelNanos.get();
    }

    /** The device's memory less batch buffers and a reserve ({@link ResidentExperts#memory}). */
    @Override
    public BackendMemory memory() {
        synchronized (this) {
            checkOpen();
            device.makeCurrent();
            return resident.memory(bufferBytes());
        }
    }

    /**
     * Enqueues a round: its slices grouped by expert into one grouped launch. Inputs may be read, and
     * outputs written, until the returned batch's {@link PendingBatch#await} returns.
     */
    @Override
    public PendingBatch submit(Round round) {
        requireNonNull(round, "round is null");
        List<List<Round.Slice>> groups = round.byExpert();
        List<ExpertWeights> experts = new ArrayList<>(groups.size());
        List<Round.Slice> ordered = new ArrayList<>(round.slices().size());
        int[] rows = new int[groups.size()];
        for (int e = 0; e < groups.size(); e++) {
            experts.add(groups.get(e).getFirst().expert());
            for (Round.Slice s : groups.get(e)) {
                rows[e] = Math.addExact(rows[e], s.input().rows());
                ordered.add(s);
            }
        }
        return submit(experts, rows, ordered.stream().map(Round.Slice::input).toList(),
                ordered.stream().map(Round.Slice::output).toList());
    }

    /**
     * Computes several experts in one grouped launch on f32 rows: {@code input} holds {@code rows[0]}
     * rows for {@code experts.get(0)}, then {@code rows[1]} for the next, and so on; {@code output}
     * receives the results in the same order. For the device check, which measures the kernels.
     */
    public void computeGroup(List<ExpertWeights> experts, float[] input, int[] rows, float[] output) {
        submit(experts, input, rows, output).await();
    }

    /** Enqueues f32 rows as {@link #computeGroup} takes them; {@code output} is written by the batch's await. */
    public PendingBatch submit(List<ExpertWeights> experts, float[] input, int[] rows, float[] output) {
        int hidden = experts.isEmpty() ? 0 : experts.getFirst().hiddenSize();
        long values = (long) java.util.Arrays.stream(rows).sum() * hidden;
        if (input.length < values || output.length < values) {
            throw new IllegalArgumentException("input and output must hold " + values + " values");
        }
        int total = (int) (values / Math.max(1, hidden));
        RowBatch in = new RowBatch(DType.F32, total, hidden, MemorySegment.ofArray(input).asSlice(0, 4 * values),
                MemorySegment.NULL);
        RowBatch out = new RowBatch(DType.F32, total, hidden, MemorySegment.ofArray(output).asSlice(0, 4 * values),
                MemorySegment.NULL);
        return submit(experts, rows, List.of(in), List.of(out));
    }

    /**
     * Enqueues rows for a group of experts and returns before they are computed: {@code inputs},
     * taken in order, hold {@code rows[0]} rows for {@code experts.get(0)}, then the next expert's;
     * {@code outputs} (the same row counts) receive the results. At most two batches are in flight:
     * a third submit waits until an earlier batch has been {@linkplain PendingBatch#await awaited},
     * so a single thread must await the first before submitting a third.
     */
    PendingBatch submit(List<ExpertWeights> experts, int[] rows, List<RowBatch> inputs, List<RowBatch> outputs) {
        requireNonNull(experts, "experts is null");
        checkOpen();
        if (experts.isEmpty() || experts.size() != rows.length) {
            throw new IllegalArgumentException(experts.size() + " experts but " + rows.length + " row counts");
        }
        int hidden = experts.getFirst().hiddenSize();
        int intermediate = experts.getFirst().intermediateSize();
        long total = 0;
        for (int e = 0; e < rows.length; e++) {
            ExpertWeights w = experts.get(e);
            if (w.hiddenSize() != hidden || w.intermediateSize() != intermediate) {
                throw new IllegalArgumentException("experts of one batch must share their shape");
            }
            if (rows[e] < 0) {
                throw new IllegalArgumentException("negative row count " + rows[e]);
            }
            total += rows[e];
        }
        long inputRows = 0;
        for (RowBatch in : inputs) {
            inputRows += in.rows();
            if (in.width() != hidden) {
                throw new IllegalArgumentException("input rows of width " + in.width() + " for experts of hidden size " + hidden);
            }
        }
        long outputRows = 0;
        for (RowBatch out : outputs) {
            outputRows += out.rows();
            if (out.width() != hidden) {
                throw new IllegalArgumentException("output rows of width " + out.width() + " for experts of hidden size " + hidden);
            }
        }
        if (inputRows != total || outputRows != total) {
            throw new IllegalArgumentException("inputs hold " + inputRows + " rows and outputs " + outputRows
                    + ", the experts' row counts add up to " + total);
        }
        if (total == 0) {
            return new PendingBatch(null, null);
        }
        List<Launch> launches = launches(experts, rows, hidden, intermediate);
        long slotBytes = 0;
        for (Launch l : launches) {
            slotBytes += l.gateUp().slotBytes() + l.down().slotBytes();
        }
        int totalRows = Math.toIntExact(total);
        long inBytes = total * hidden * 2;
        long actBytes = total * intermediate * 2;
        long outBytes = total * hidden * 2;

        BatchBuffers b = takeBuffers();
        boolean enqueuing = false;
        try {
            device.makeCurrent();
            b.ensure(inBytes, actBytes, outBytes, slotBytes);
            // Rows already in pinned memory as bf16 go up from where they are and outputs come down into
            // where they go; others through the staging buffers.
            RoundCopies<PinnedBuffer> copies = RoundCopies.plan(inputs, outputs, pinned::buffer,
                    b.hostIn, new RowBatch(DType.BF16, totalRows, hidden, b.hostIn.segment().asSlice(0, inBytes), MemorySegment.NULL),
                    b.hostOut, new RowBatch(DType.BF16, totalRows, hidden, b.hostOut.segment().asSlice(0, outBytes), MemorySegment.NULL));
            if (copies.bf16Staged()) {
                warnStagedOnce(inputs);
            }
            synchronized (this) {
                checkOpen();
                ResidentExperts.DeviceExpert[] onDevice = new ResidentExperts.DeviceExpert[rows.length];
                for (int e = 0; e < rows.length; e++) {
                    if (rows[e] > 0) {
                        onDevice[e] = resident.get(experts.get(e));
                        if (onDevice[e] == null) {
                            throw new IllegalStateException("expert is not loaded on the device (unloaded while a round was on its way?)");
                        }
                    }
                }
                MemorySegment slots = b.hostSlots.segment();
                long slotAt = 0;
                for (Launch l : launches) {
                    boolean hopper = l.gateUp().tile().hopper;
                    long[] gateUpAddress = new long[rows.length];
                    long[] downAddress = new long[rows.length];
                    for (int e = 0; e < rows.length; e++) {
                        ResidentExperts.DeviceExpert d = onDevice[e];
                        if (d != null && d.weights() == l.gateUp().weights()) {
                            // The Hopper kernels find an expert's weights through its tensor maps.
                            gateUpAddress[e] = hopper ? d.tensorMaps().address() : d.gateUp().address();
                            downAddress[e] = hopper ? d.tensorMaps().address() + TensorMaps.BYTES : d.down().address();
                        }
                    }
                    l.gateUp().writeSlots(slots.asSlice(slotAt), gateUpAddress);
                    l.down().writeSlots(slots.asSlice(slotAt + l.gateUp().slotBytes()), downAddress);
                    slotAt += l.gateUp().slotBytes() + l.down().slotBytes();
                }
                enqueuing = true;
                enqueue(b, launches, copies, outBytes, slotBytes);
            }
            return new PendingBatch(b, copies);
        } catch (RuntimeException | Error e) {
            if (enqueuing) {
                // Copies enqueued before the failure still read the round's inputs and write its outputs
                // and b's buffers: let them finish before the caller gives those buffers to other batches.
                for (CUstream stream : new CUstream[] {uploadStream, computeStream, downloadStream}) {
                    cuStreamSynchronize(stream); // an error here is the one already thrown, or the context's
                }
            }
            freeBuffers.add(b);
            throw e;
        }
    }

    /**
     * Says once that bf16 rows came from outside pinned memory, so each is copied on the CPU: the
     * worker's buffers are pinned, so the transport or protobuf copied the message first (protobuf
     * aliases native memory only where it may use {@code sun.misc.Unsafe}).
     */
    private void warnStagedOnce(List<RowBatch> inputs) {
        if (!warnedStaged) {
            warnedStaged = true;
            boolean heap = inputs.stream().anyMatch(in -> in.dtype() == DType.BF16 && !in.data().isNative());
            LOG.warning(() -> "cuda backend: bf16 rows arrived in " + (heap ? "heap memory, not in" : "native memory that is not")
                    + " this backend's pinned buffers, so they are copied through a staging buffer on the CPU;"
                    + " the worker's data path should receive into pinned memory (is --sun-misc-unsafe-memory-access=allow set?)");
        }
    }

    /**
     * The launches of a batch: a gate/up and a down plan per weight dtype on the device among the experts
     * with rows (one pair unless a batch mixes bf16 and FP8 experts), each with the tile for its own
     * largest expert; FP8 weights take the mma.sync tiles on every GPU.
     */
    private List<Launch> launches(List<ExpertWeights> experts, int[] rows, int hidden, int intermediate) {
        List<Launch> launches = new ArrayList<>(1);
        for (DType weights : new DType[] {DType.BF16, DType.FP8_E4M3}) {
            boolean[] included = new boolean[rows.length];
            boolean all = true;
            int maxRows = 0;
            for (int e = 0; e < rows.length; e++) {
                included[e] = WeightLayout.deviceDtype(experts.get(e).dtype()) == weights;
                all &= included[e] || rows[e] == 0;
                if (included[e]) {
                    maxRows = Math.max(maxRows, rows[e]);
                }
            }
            if (maxRows == 0) {
                continue;
            }
            TileConfig forced = forcedTile;
            TileConfig tile = forced != null && !(forced.hopper && weights == DType.FP8_E4M3)
                    ? forced : TileConfig.forRows(maxRows, kernels.hopper(), weights);
            boolean[] only = all ? null : included;
            launches.add(new Launch(LaunchPlan.gateUp(tile, weights, rows, only, hidden, intermediate),
                    LaunchPlan.down(tile, weights, rows, only, hidden, intermediate)));
        }
        return launches;
    }

    /** The two grouped launches of one expert FFN over the experts of one weight dtype. */
    private record Launch(LaunchPlan gateUp, LaunchPlan down) {}

    private void enqueue(BatchBuffers b, List<Launch> launches, RoundCopies<PinnedBuffer> copies, long outBytes, long slotBytes) {
        for (Transfers.Copy<PinnedBuffer> c : copies.uploads().copies()) {
            CudaFailure.check(cuMemcpyHtoDAsync(b.devIn.withByteOffset(c.deviceOffset()),
                    PinnedHost.pointer(c.buffer(), c.hostAddress()), c.bytes(), uploadStream), "cuMemcpyHtoDAsync(activations)");
        }
        CudaFailure.check(cuMemcpyHtoDAsync(b.devSlots, b.hostSlots.pointer(0), slotBytes, uploadStream), "cuMemcpyHtoDAsync(slots)");
        CudaFailure.check(cuEventRecord(b.uploaded, uploadStream), "cuEventRecord");
        CudaFailure.check(cuStreamWaitEvent(computeStream, b.uploaded, 0), "cuStreamWaitEvent");
        if (poisonOutputs) {
            CudaFailure.check(cuMemsetD16Async(b.devOut, BF16_NAN_BITS, outBytes / 2, computeStream), "cuMemsetD16Async");
            CudaFailure.check(cuMemsetD16Async(b.devAct, BF16_NAN_BITS, b.devAct.bytes() / 2, computeStream), "cuMemsetD16Async");
        }
        CudaFailure.check(cuEventRecord(b.kernelStart, computeStream), "cuEventRecord");
        long slots = b.devSlots.address();
        for (Launch l : launches) { // each writes only its own experts' rows of act and of the outputs
            kernels.launchGateUp(l.gateUp(), slots, b.devIn.address(), b.devAct.address(), computeStream);
            kernels.launchDown(l.down(), slots + l.gateUp().slotBytes(), b.devAct.address(), b.devOut.address(), computeStream);
            slots += l.gateUp().slotBytes() + l.down().slotBytes();
        }
        CudaFailure.check(cuEventRecord(b.kernelEnd, computeStream), "cuEventRecord");
        CudaFailure.check(cuStreamWaitEvent(downloadStream, b.kernelEnd, 0), "cuStreamWaitEvent");
        for (Transfers.Copy<PinnedBuffer> c : copies.downloads().copies()) {
            CudaFailure.check(cuMemcpyDtoHAsync(PinnedHost.pointer(c.buffer(), c.hostAddress()),
                    b.devOut.withByteOffset(c.deviceOffset()), c.bytes(), downloadStream), "cuMemcpyDtoHAsync(outputs)");
        }
        CudaFailure.check(cuEventRecord(b.downloaded, downloadStream), "cuEventRecord");
    }

    private BatchBuffers takeBuffers() {
        try {
            return freeBuffers.take();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException("interrupted while waiting for a batch buffer", e);
        }
    }

    /** Uploads {@code expert} now, so its first batch does not wait for it. */
    public void preload(ExpertWeights expert) {
        requireNonNull(expert, "expert is null");
        synchronized (this) {
            checkOpen();
            device.makeCurrent();
            resident.load(expert);
        }
    }

    /** Frees {@code expert}'s device memory once the work already enqueued is done; it is not computed again until loaded again. */
    @Override
    public void unload(ExpertWeights expert) {
        synchronized (this) {
            if (closed || resident.get(expert) == null) {
                return;
            }
            device.makeCurrent();
            resident.unload(expert);
        }
    }

    /** Device memory held and free, as the driver and this backend count it. */
    public DeviceMemory deviceMemory() {
        synchronized (this) {
            checkOpen();
            device.makeCurrent();
            return resident.deviceMemory(bufferBytes());
        }
    }

    private long bufferBytes() {
        long buffers = 0;
        for (BatchBuffers b : allBuffers) {
            buffers += b.deviceBytes();
        }
        return buffers;
    }

    /** The device this backend runs on, in one line. */
    public String deviceDescription() {
        return device.properties().describe();
    }

    /**
     * Forces one tile shape instead of choosing by rows (null restores the choice); for the device check.
     * A Hopper tile applies to bf16 experts only: FP8 experts keep the mma.sync choice.
     */
    void forceTile(TileConfig tile) {
        if (tile != null && !kernels.tiles().contains(tile)) {
            throw new IllegalArgumentException("tile " + tile.suffix() + " is not loaded on " + device.properties().name());
        }
        this.forcedTile = tile;
    }

    /** Fills device outputs with NaN before every launch, so rows a kernel fails to write show up. */
    void poisonOutputs(boolean poison) {
        this.poisonOutputs = poison;
    }

    FfnKernels kernels() {
        return kernels;
    }

    CudaDevice device() {
        return device;
    }

    private void checkOpen() {
        if (closed) {
            throw new IllegalStateException("cuda backend is closed");
        }
    }

    /**
     * Releases the device: waits for enqueued work, frees experts and buffers, releases the context.
     * Call it after the last batch has been awaited.
     */
    @Override
    public void close() {
        synchronized (this) {
            if (closed) {
                return;
            }
            closed = true;
            device.makeCurrent();
            int sync = cuCtxSynchronize();
            if (sync != 0) {
                LOG.warning("cuda backend closing after a device error: " + jcuda.driver.CUresult.stringFor(sync));
            }
            try {
                resident.freeAll();
                for (BatchBuffers b : allBuffers) {
                    b.free();
                }
                memoryDriver.close();
                cuStreamDestroy(uploadStream);
                cuStreamDestroy(computeStream);
                cuStreamDestroy(downloadStream);
                kernels.close();
            } catch (RuntimeException e) {
                LOG.log(Level.WARNING, "cuda backend did not release everything", e);
            } finally {
                try {
                    pinned.close(); // the worker's buffers too (its server and compute thread have stopped)
                } catch (RuntimeException e) {
                    LOG.log(Level.WARNING, "cuda backend did not free all pinned memory", e);
                }
                device.close();
            }
        }
    }

    /** A submitted round; its outputs are complete once {@link #await} returns. */
    public final class PendingBatch implements PendingRound {
        private final BatchBuffers buffers;
        private final RoundCopies<PinnedBuffer> copies;
        private float kernelMillis = Float.NaN;
        private boolean awaited;

        private PendingBatch(BatchBuffers buffers, RoundCopies<PinnedBuffer> copies) {
            this.buffers = buffers;
            this.copies = copies;
        }

        @Override
        public boolean done() {
            return buffers == null || awaited || cuEventQuery(buffers.downloaded) == CUresult.CUDA_SUCCESS;
        }

        /**
         * Waits for the round; outputs the download did not write (not pinned, or not bf16) are written
         * from the downloaded bf16 rows in their dtype.
         */
        @Override
        public void await() {
            if (awaited) {
                throw new IllegalStateException("batch already awaited");
            }
            awaited = true;
            if (buffers == null) {
                return;
            }
            try {
                device.makeCurrent();
                CudaFailure.check(cuEventSynchronize(buffers.downloaded), "cuEventSynchronize(batch)");
                copies.writeStagedOutputs();
                float[] ms = new float[1];
                if (cuEventElapsedTime(ms, buffers.kernelStart, buffers.kernelEnd) == 0) {
                    kernelMillis = ms[0];
                    kernelNanos.addAndGet(Math.round(ms[0] * 1e6));
                }
            } finally {
                freeBuffers.add(buffers);
            }
        }

        /** Bytes of rows copied by DMA straight from and to where they lie (pinned bf16), both ways: none passed through staging. */
        public long directBytes() {
            return copies == null ? 0 : copies.directBytes();
        }

        /** Milliseconds the batch's two launches took on the device (NaN before {@link #await}). */
        public float kernelMillis() {
            return kernelMillis;
        }
    }

    /** One batch's pinned host buffers, device buffers and events; grown on demand, reused. */
    private static final class BatchBuffers {
        final PinnedHost pinned;
        PinnedBuffer hostIn;
        PinnedBuffer hostOut;
        PinnedBuffer hostSlots;
        DeviceBuffer devIn;
        DeviceBuffer devAct;
        DeviceBuffer devOut;
        DeviceBuffer devSlots;
        final CUevent uploaded = event(CUevent_flags.CU_EVENT_DISABLE_TIMING);
        final CUevent downloaded = event(CUevent_flags.CU_EVENT_DISABLE_TIMING);
        final CUevent kernelStart = event(CUevent_flags.CU_EVENT_DEFAULT);
        final CUevent kernelEnd = event(CUevent_flags.CU_EVENT_DEFAULT);

        BatchBuffers(PinnedHost pinned) {
            this.pinned = pinned;
        }

        private static CUevent event(int flags) {
            CUevent e = new CUevent();
            CudaFailure.check(cuEventCreate(e, flags), "cuEventCreate");
            return e;
        }

        void ensure(long inBytes, long actBytes, long outBytes, long slotBytes) {
            hostIn = grow(hostIn, inBytes);
            hostOut = grow(hostOut, outBytes);
            hostSlots = grow(hostSlots, slotBytes);
            devIn = grow(devIn, inBytes);
            devAct = grow(devAct, actBytes);
            devOut = grow(devOut, outBytes);
            devSlots = grow(devSlots, slotBytes);
        }

        private PinnedBuffer grow(PinnedBuffer b, long needed) {
            if (b != null && b.bytes() >= needed) {
                return b;
            }
            if (b != null) {
                pinned.release(b);
            }
            return pinned.allocateBuffer(capacity(needed));
        }

        private static DeviceBuffer grow(DeviceBuffer b, long needed) {
            if (b != null && b.bytes() >= needed) {
                return b;
            }
            if (b != null) {
                b.free();
            }
            return DeviceBuffer.allocate(capacity(needed));
        }

        /** Next power of two, at least 64 KiB: a growing batch reallocates a few times, then never. */
        private static long capacity(long needed) {
            return Math.max(64 << 10, Long.highestOneBit(needed - 1) << 1);
        }

        long deviceBytes() {
            long n = 0;
            for (DeviceBuffer b : new DeviceBuffer[] {devIn, devAct, devOut, devSlots}) {
                n += b == null ? 0 : b.bytes();
            }
            return n;
        }

        void free() {
            for (PinnedBuffer b : new PinnedBuffer[] {hostIn, hostOut, hostSlots}) {
                if (b != null) {
                    pinned.release(b);
                }
            }
            for (DeviceBuffer b : new DeviceBuffer[] {devIn, devAct, devOut, devSlots}) {
                if (b != null) {
                    b.free();
                }
            }
            for (CUevent e : new CUevent[] {uploaded, downloaded, kernelStart, kernelEnd}) {
                cuEventDestroy(e);
            }
        }
    }
}
