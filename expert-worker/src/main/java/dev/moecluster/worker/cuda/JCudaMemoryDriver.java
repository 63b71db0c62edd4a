package dev.moecluster.worker.cuda;

import static jcuda.driver.JCudaDriver.cuCtxSynchronize;
import static jcuda.driver.JCudaDriver.cuEventCreate;
import static jcuda.driver.JCudaDriver.cuEventDestroy;
import static jcuda.driver.JCudaDriver.cuEventRecord;
import static jcuda.driver.JCudaDriver.cuEventSynchronize;
import static jcuda.driver.JCudaDriver.cuMemcpyHtoD;
import static jcuda.driver.JCudaDriver.cuMemcpyHtoDAsync;
import static jcuda.driver.JCudaDriver.cuStreamSynchronize;

import jcuda.Pointer;
import jcuda.driver.CUevent;
import jcuda.driver.CUevent_flags;
import jcuda.driver.CUstream;

/**
 * Device memory through JCuda's driver API, for the cuda backend's weights: {@code cuMemAlloc} and
 * {@code cuMemFree}, {@code cuMemGetInfo}, and uploads streamed through the two halves of a pinned
 * staging buffer on the backend's upload stream, so the host lays out one chunk while the previous
 * chunk's copy runs. Callers make the device's context current first.
 */
final class JCudaMemoryDriver implements DeviceMemoryDriver {
    /** Bytes of each half of the pinned buffer weights are streamed through on upload. */
    static final long STAGING_HALF_BYTES = 16L << 20;

    private final CudaDevice device;
    private final CUstream uploadStream;
    private final PinnedBuffer staging;
    private final CUevent[] stagingFree = {new CUevent(), new CUevent()};

    JCudaMemoryDriver(CudaDevice device, CUstream uploadStream) {
        this.device = device;
        this.uploadStream = uploadStream;
        for (CUevent e : stagingFree) {
            CudaFailure.check(cuEventCreate(e, CUevent_flags.CU_EVENT_DISABLE_TIMING), "cuEventCreate");
            CudaFailure.check(cuEventRecord(e, uploadStream), "cuEventRecord");
        }
        this.staging = PinnedBuffer.allocate(2 * STAGING_HALF_BYTES);
    }

    @Override
    public Allocation allocate(long bytes) {
        return DeviceBuffer.allocate(bytes);
    }

    @Override
    public void free(Allocation memory) {
        ((DeviceBuffer) memory).free(); // only this driver's allocations come back to it
    }

    @Override
    public void upload(Allocation dst, long offset, int rows, long rowBytes, RowWriter writer) {
        if (rowBytes > STAGING_HALF_BYTES) {
            throw new IllegalArgumentException("a weight row of " + rowBytes + " bytes exceeds the staging buffer");
        }
        if (offset < 0 || offset + rows * rowBytes > dst.bytes()) {
            throw new IllegalArgumentException(rows * rowBytes + " bytes at offset " + offset + " do not fit a device buffer of "
                    + dst.bytes());
        }
        DeviceBuffer device = (DeviceBuffer) dst;
        int perChunk = (int) Math.min(rows, STAGING_HALF_BYTES / rowBytes);
        int half = 0;
        for (int first = 0; first < rows; first += perChunk, half ^= 1) {
            int count = Math.min(perChunk, rows - first);
            CudaFailure.check(cuEventSynchronize(stagingFree[half]), "cuEventSynchronize(staging)");
            long stagingOffset = half * STAGING_HALF_BYTES;
            writer.write(first, count, staging.segment().asSlice(stagingOffset, count * rowBytes));
            CudaFailure.check(cuMemcpyHtoDAsync(device.withByteOffset(offset + first * rowBytes), staging.pointer(stagingOffset),
                    count * rowBytes, uploadStream), "cuMemcpyHtoDAsync(weights)");
            CudaFailure.check(cuEventRecord(stagingFree[half], uploadStream), "cuEventRecord");
        }
    }

    @Override
    public void awaitUploads() {
        CudaFailure.check(cuStreamSynchronize(uploadStream), "cuStreamSynchronize(upload)");
    }

    @Override
    public void copy(Allocation dst, byte[] bytes) {
        CudaFailure.check(cuMemcpyHtoD((DeviceBuffer) dst, Pointer.to(bytes), bytes.length), "cuMemcpyHtoD(tensor maps)");
    }

    @Override
    public void synchronize() {
        CudaFailure.check(cuCtxSynchronize(), "cuCtxSynchronize");
    }

    @Override
    public long[] memoryInfo() {
        return device.memoryInfo();
    }

    @Override
    public void close() {
        staging.free();
        for (CUevent e : stagingFree) {
            cuEventDestroy(e);
        }
    }
}
