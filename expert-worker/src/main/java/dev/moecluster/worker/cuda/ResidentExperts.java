package dev.moecluster.worker.cuda;

import dev.moecluster.core.moe.ExpertWeights;
import dev.moecluster.core.tensor.DType;
import dev.moecluster.worker.BackendMemory;
import dev.moecluster.worker.cuda.DeviceMemoryDriver.Allocation;
import java.util.IdentityHashMap;
import java.util.Locale;
import java.util.Map;

/**
 * The experts whose weights are on the device, for the cuda backend: uploaded when the worker loads an
 * expert (gate/up interleaved and down in {@link WeightLayout}: bf16, or an FP8 checkpoint's e4m3 codes
 * and scales at one byte a weight; on Hopper a bf16 expert also gets the kernels' two tensor maps), freed
 * when it unloads one, and counted, so the backend reports what it holds and what it could hold. Not
 * thread-safe: the backend calls it under its lock, with its context current.
 */
final class ResidentExperts {
    /** Device memory left free when uploading experts, for batch buffers and the driver. */
    static final long MEMORY_RESERVE_BYTES = 512L << 20;

    /**
     * An expert's weights on the device: gate/up interleaved {@code [2I, H]} and down {@code [H, I]} in
     * {@code weights} (bf16, or FP8 codes each followed by its rows' scales); for a bf16 expert on Hopper
     * also their two TMA tensor maps (gate/up's, then down's), which the Hopper kernels' slot table points
     * at, else null (the FP8 kernels are the mma.sync ones on every GPU).
     */
    record DeviceExpert(Allocation gateUp, Allocation down, Allocation tensorMaps, DType weights, int hidden,
            int intermediate) {
        long bytes() {
            return gateUp.bytes() + down.bytes() + (tensorMaps == null ? 0 : tensorMaps.bytes());
        }
    }

    private final DeviceMemoryDriver driver;
    private final boolean hopper;
    private final Map<ExpertWeights, DeviceExpert> resident = new IdentityHashMap<>();
    private long expertBytes;

    /** Experts on the device {@code driver} reaches; {@code hopper}: with the tensor maps the Hopper kernels read. */
    ResidentExperts(DeviceMemoryDriver driver, boolean hopper) {
        this.driver = driver;
        this.hopper = hopper;
    }

    /** {@code expert} on the device, or null when it is not loaded. */
    DeviceExpert get(ExpertWeights expert) {
        return resident.get(expert);
    }

    /**
     * Uploads {@code expert} unless it is on the device already.
     *
     * @throws CudaFailure when the device has no room for it beyond {@link #MEMORY_RESERVE_BYTES}; the message
     *     names the expert's shape, the bytes it needs and the bytes free
     */
    void load(ExpertWeights expert) {
        if (!resident.containsKey(expert)) {
            DeviceExpert d = upload(expert);
            resident.put(expert, d);
            expertBytes += d.bytes();
        }
    }

    /** Frees {@code expert}'s device memory once the work already enqueued is done; false when it was not loaded. */
    boolean unload(ExpertWeights expert) {
        DeviceExpert d = resident.remove(expert);
        if (d == null) {
            return false;
        }
        driver.synchronize();
        expertBytes -= d.bytes();
        free(d);
        return true;
    }

    /** Device memory as the backend accounts it, with {@code bufferBytes} of batch buffers. */
    DeviceMemory deviceMemory(long bufferBytes) {
        long[] info = driver.memoryInfo();
        return new DeviceMemory(expertBytes, bufferBytes, info[0], info[1], resident.size());
    }

    /**
     * What the experts hold and what the device could hold: its memory less {@code bufferBytes} of batch
     * buffers and the reserve. The worker reports it as its capacity unless {@code --memory-budget} is smaller.
     */
    BackendMemory memory(long bufferBytes) {
        DeviceMemory m = deviceMemory(bufferBytes);
        return new BackendMemory(m.expertBytes(), Math.max(0, m.totalBytes() - m.bufferBytes() - MEMORY_RESERVE_BYTES),
                m.residentExperts());
    }

    /** Frees every expert; for the backend's close, after it has waited for the device. */
    void freeAll() {
        for (DeviceExpert d : resident.values()) {
            free(d);
        }
        resident.clear();
        expertBytes = 0;
    }

    private void free(DeviceExpert d) {
        driver.free(d.gateUp());
        driver.free(d.down());
        if (d.tensorMaps() != null) {
            driver.free(d.tensorMaps());
        }
    }

    private DeviceExpert upload(ExpertWeights w) {
        int hidden = w.hiddenSize();
        int intermediate = w.intermediateSize();
        LaunchPlan.checkShape(hidden, intermediate);
        DType weights = WeightLayout.deviceDtype(w.dtype());
        long gateUpBytes = WeightLayout.gateUpBytes(w);
        long downBytes = WeightLayout.downBytes(w);
        long free = driver.memoryInfo()[0];
        if (free < gateUpBytes + downBytes + MEMORY_RESERVE_BYTES) {
            throw new CudaFailure(String.format(Locale.ROOT,
                    "GPU memory is full: an expert of hidden %d x intermediate %d needs %d bytes (%d MiB) and %d bytes"
                            + " (%d MiB) are free, %d MiB of them kept for batch buffers (%d experts, %d bytes resident);"
                            + " hold fewer experts on this worker",
                    hidden, intermediate, gateUpBytes + downBytes, (gateUpBytes + downBytes) >> 20, free, free >> 20,
                    MEMORY_RESERVE_BYTES >> 20, resident.size(), expertBytes));
        }
        Allocation gateUp = driver.allocate(gateUpBytes);
        Allocation down = null;
        Allocation maps = null;
        try {
            down = driver.allocate(downBytes);
            long gateUpCodes = WeightLayout.gateUpRows(w) * WeightLayout.rowBytes(weights, hidden);
            long downCodes = WeightLayout.downRows(w) * WeightLayout.rowBytes(weights, intermediate);
            driver.upload(gateUp, 0, WeightLayout.gateUpRows(w), WeightLayout.rowBytes(weights, hidden),
                    (first, count, dst) -> WeightLayout.writeGateUpRows(w, first, count, dst));
            driver.upload(down, 0, WeightLayout.downRows(w), WeightLayout.rowBytes(weights, intermediate),
                    (first, count, dst) -> WeightLayout.writeDownRows(w, first, count, dst));
            if (weights == DType.FP8_E4M3) { // each matrix's scales right after its codes, where the kernels look
                driver.upload(gateUp, gateUpCodes, WeightLayout.gateUpRows(w), Float.BYTES,
                        (first, count, dst) -> WeightLayout.writeGateUpScales(w, first, count, dst));
                driver.upload(down, downCodes, WeightLayout.downRows(w), Float.BYTES,
                        (first, count, dst) -> WeightLayout.writeDownScales(w, first, count, dst));
            }
            driver.awaitUploads();
            if (hopper && weights == DType.BF16) {
                maps = uploadTensorMaps(gateUp, down, w);
            }
            return new DeviceExpert(gateUp, down, maps, weights, hidden, intermediate);
        } catch (RuntimeException | Error e) {
            try {
                driver.awaitUploads(); // the staging buffer and the memory must not be in use when freed
            } catch (RuntimeException again) {
                e.addSuppressed(again);
            }
            driver.free(gateUp);
            if (down != null) {
                driver.free(down);
            }
            if (maps != null) {
                driver.free(maps);
            }
            throw e;
        }
    }

    /**
     * The expert's two weight tensor maps, encoded once for the life of its upload: the Hopper kernels
     * load B tiles of 128 rows by 64 columns through them.
     */
    private Allocation uploadTensorMaps(Allocation gateUp, Allocation down, ExpertWeights w) {
        byte[] maps = new byte[2 * TensorMaps.BYTES];
        System.arraycopy(TensorMaps.encode(new TensorMaps.Bf16Matrix(gateUp.address(), WeightLayout.gateUpRows(w),
                w.hiddenSize(), Sm90Layout.B_BOX_ROWS)), 0, maps, 0, TensorMaps.BYTES);
        System.arraycopy(TensorMaps.encode(new TensorMaps.Bf16Matrix(down.address(), WeightLayout.downRows(w),
                w.intermediateSize(), Sm90Layout.B_BOX_ROWS)), 0, maps, TensorMaps.BYTES, TensorMaps.BYTES);
        Allocation buffer = driver.allocate(maps.length);
        try {
            driver.copy(buffer, maps);
            return buffer;
        } catch (RuntimeException e) {
            driver.free(buffer);
            throw e;
        }
    }
}
