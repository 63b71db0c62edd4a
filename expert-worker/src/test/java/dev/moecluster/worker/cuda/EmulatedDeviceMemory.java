package dev.moecluster.worker.cuda;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.HashMap;
import java.util.Map;

/**
 * A device of a fixed capacity whose memory lives on the host, for running the cuda backend's expert
 * bookkeeping without a GPU: allocations get distinct 256-byte aligned addresses (as {@code cuMemAlloc}'s
 * are), an allocation past the capacity fails as the driver's does with {@code CUDA_ERROR_OUT_OF_MEMORY},
 * freeing twice or freeing what it never allocated fails, and uploads land in the memory so a test can
 * read back what the device holds. Uploads go through chunks of a few rows, as the real staging buffer
 * cuts them.
 */
class EmulatedDeviceMemory implements DeviceMemoryDriver {
    /** Rows per upload chunk: small, so matrices of a few rows already take several chunks. */
    static final int ROWS_PER_CHUNK = 3;
    private static final long ALIGNMENT = 256;

    /** One allocation and its contents. */
    private record Block(long address, long bytes, MemorySegment contents) implements Allocation {}

    private final long capacity;
    private final Arena arena = Arena.ofAuto();
    private final Map<Long, Block> live = new HashMap<>();
    private long nextAddress = 1L << 32;
    private long used;
    private int synchronizations;

    EmulatedDeviceMemory(long capacity) {
        this.capacity = capacity;
    }

    @Override
    public Allocation allocate(long bytes) {
        if (bytes <= 0) {
            throw new IllegalArgumentException("device buffer of " + bytes + " bytes");
        }
        if (used + bytes > capacity) {
            throw new CudaFailure("cuMemAlloc(" + bytes + " bytes) failed: CUDA_ERROR_OUT_OF_MEMORY");
        }
        Block b = new Block(nextAddress, bytes, arena.allocate(bytes));
        nextAddress += (bytes + ALIGNMENT - 1) / ALIGNMENT * ALIGNMENT;
        live.put(b.address(), b);
        used += bytes;
        return b;
    }

    @Override
    public void free(Allocation memory) {
        Block b = live.remove(memory.address());
        if (b == null || b != memory) {
            throw new CudaFailure("cuMemFree failed: CUDA_ERROR_INVALID_VALUE (0x" + Long.toHexString(memory.address())
                    + " is not allocated)");
        }
        used -= b.bytes();
    }

    @Override
    public void upload(Allocation dst, long offset, int rows, long rowBytes, RowWriter writer) {
        MemorySegment contents = contents(dst);
        if (offset < 0 || offset + rows * rowBytes > dst.bytes()) {
            throw new CudaFailure("cuMemcpyHtoDAsync failed: CUDA_ERROR_INVALID_VALUE (" + rows * rowBytes
                    + " bytes at offset " + offset + " into " + dst.bytes() + ")");
        }
        for (int first = 0; first < rows; first += ROWS_PER_CHUNK) {
            int count = Math.min(ROWS_PER_CHUNK, rows - first);
            writer.write(first, count, contents.asSlice(offset + first * rowBytes, count * rowBytes));
        }
    }

    @Override
    public void awaitUploads() {}

    @Override
    public void copy(Allocation dst, byte[] bytes) {
        MemorySegment.copy(MemorySegment.ofArray(bytes), 0, contents(dst), 0, bytes.length);
    }

    @Override
    public void synchronize() {
        synchronizations++;
    }

    @Override
    public long[] memoryInfo() {
        return new long[] {capacity - used, capacity};
    }

    @Override
    public void close() {}

    /** Bytes allocated and not freed. */
    long usedBytes() {
        return used;
    }

    /** Allocations not freed. */
    int allocations() {
        return live.size();
    }

    /** How often the backend waited for the device's work. */
    int synchronizations() {
        return synchronizations;
    }

    /** What the device holds at {@code memory}. */
    MemorySegment contents(Allocation memory) {
        Block b = live.get(memory.address());
        if (b == null) {
            throw new IllegalStateException("0x" + Long.toHexString(memory.address()) + " is not allocated");
        }
        return b.contents();
    }
}
