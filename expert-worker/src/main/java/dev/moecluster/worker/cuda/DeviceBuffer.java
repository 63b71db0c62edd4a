package dev.moecluster.worker.cuda;

import static jcuda.driver.JCudaDriver.cuMemAlloc;
import static jcuda.driver.JCudaDriver.cuMemFree;

import jcuda.driver.CUdeviceptr;

/**
 * Device memory from {@code cuMemAlloc}, with its address readable on the host (the slot table the
 * kernels read holds weight addresses). Not thread-safe; owners free it once.
 */
final class DeviceBuffer extends CUdeviceptr implements DeviceMemoryDriver.Allocation {
    private final long bytes;
    private boolean freed;

    private DeviceBuffer(long bytes) {
        this.bytes = bytes;
    }

    static DeviceBuffer allocate(long bytes) {
        if (bytes <= 0) {
            throw new IllegalArgumentException("device buffer of " + bytes + " bytes");
        }
        DeviceBuffer b = new DeviceBuffer(bytes);
        CudaFailure.check(cuMemAlloc(b, bytes), "cuMemAlloc(" + bytes + " bytes)");
        return b;
    }

    @Override
    public long bytes() {
        return bytes;
    }

    /** The device address, as kernels see it. */
    @Override
    public long address() {
        return getNativePointer();
    }

    void free() {
        if (!freed) {
            freed = true;
            CudaFailure.check(cuMemFree(this), "cuMemFree");
        }
    }
}
