package dev.moecluster.worker.cuda;

import java.lang.foreign.MemorySegment;

/**
 * The driver calls that put expert weights on a device and take them off: allocate, free, copy from the
 * host, and the device's free and total memory. {@link JCudaMemoryDriver} makes them through JCuda; tests
 * run the cuda backend's expert bookkeeping ({@link ResidentExperts}) against an emulated device.
 */
interface DeviceMemoryDriver extends AutoCloseable {
    /** Device memory from {@link #allocate}: its address as kernels see it, and its size. */
    interface Allocation {
        long address();

        long bytes();
    }

    /** Lays out rows {@code [first, first + count)} of a matrix in host memory, from {@code dst}'s offset 0. */
    interface RowWriter {
        void write(int first, int count, MemorySegment dst);
    }

    /**
     * Allocates {@code bytes} of device memory.
     *
     * @throws CudaFailure when the device has no room ({@code CUDA_ERROR_OUT_OF_MEMORY}) or the call fails
     */
    Allocation allocate(long bytes);

    /** Frees memory {@link #allocate} returned; once. */
    void free(Allocation memory);

    /**
     * Starts copying {@code rows} rows of {@code rowBytes} each, which {@code writer} lays out a chunk at a
     * time in host memory, into {@code dst} from byte {@code offset}; {@link #awaitUploads} waits for every
     * copy started.
     */
    void upload(Allocation dst, long offset, int rows, long rowBytes, RowWriter writer);

    /** Waits until every {@link #upload} started is on the device. */
    void awaitUploads();

    /** Copies {@code bytes} into {@code dst} and returns once they are there. */
    void copy(Allocation dst, byte[] bytes);

    /** Waits for all work enqueued on the device, so memory it may still read can be freed. */
    void synchronize();

    /** {@code {free, total}} bytes of device memory. */
    long[] memoryInfo();

    /** Releases what the driver holds for uploads (not the allocations: their owners free those). */
    @Override
    void close();
}
