package dev.moecluster.worker.cuda;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.SymbolLookup;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandle;
import jcuda.driver.CUresult;

/**
 * TMA tensor maps for the Hopper kernels, encoded by the driver's {@code cuTensorMapEncodeTiled}. JCuda
 * 12.0 does not bind that function, so it is called from {@code libcuda.so.1} through the FFM API; the
 * library is looked up on first use, never on machines that do not encode a map.
 */
final class TensorMaps {
    /** Bytes of a {@code CUtensorMap}. */
    static final int BYTES = 128;

    private static final int DATA_TYPE_BFLOAT16 = 9;
    private static final int INTERLEAVE_NONE = 0;
    private static final int SWIZZLE_128B = 3;
    private static final int L2_PROMOTION_256B = 3;
    private static final int OOB_FILL_ZERO = 0;

    private TensorMaps() {}

    /**
     * A row-major bf16 matrix of {@code rows × cols} at {@code address}, read in boxes of {@code boxRows}
     * rows of 64 columns (128 bytes, one swizzled row): what a stage of {@code moe_ffn_sm90.cu} loads.
     * Boxes past the matrix are zero-filled.
     */
    record Bf16Matrix(long address, long rows, long cols, int boxRows) {
        Bf16Matrix {
            if (address == 0 || address % 16 != 0) {
                throw new IllegalArgumentException("TMA needs a 16-byte aligned global address, got 0x" + Long.toHexString(address));
            }
            if (rows <= 0 || cols <= 0 || cols % 8 != 0) {
                throw new IllegalArgumentException("TMA needs rows of a multiple of 16 bytes: " + rows + " x " + cols + " bf16");
            }
            if (boxRows <= 0 || boxRows > 256) {
                throw new IllegalArgumentException("a TMA box spans 1 to 256 rows, got " + boxRows);
            }
        }

        /** Box columns: 64 bf16, the 128-byte swizzle's widest inner extent. */
        int boxCols() {
            return Sm90Layout.BK;
        }
    }

    /** Encodes {@code m} into a new 128-byte map (64-byte aligned, as the driver requires). */
    static byte[] encode(Bf16Matrix m) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment map = arena.allocate(BYTES, 64);
            MemorySegment dims = arena.allocateFrom(ValueLayout.JAVA_LONG, m.cols(), m.rows());
            MemorySegment strides = arena.allocateFrom(ValueLayout.JAVA_LONG, m.cols() * 2);
            MemorySegment box = arena.allocateFrom(ValueLayout.JAVA_INT, m.boxCols(), m.boxRows());
            MemorySegment elementStrides = arena.allocateFrom(ValueLayout.JAVA_INT, 1, 1);
            MethodHandle encodeTiled = encodeTiled();
            int result;
            try {
                result = (int) encodeTiled.invokeExact(map, DATA_TYPE_BFLOAT16, 2, MemorySegment.ofAddress(m.address()),
                        dims, strides, box, elementStrides, INTERLEAVE_NONE, SWIZZLE_128B, L2_PROMOTION_256B, OOB_FILL_ZERO);
            } catch (Throwable t) {
                throw new CudaFailure("cuTensorMapEncodeTiled could not be called: " + t);
            }
            if (result != CUresult.CUDA_SUCCESS) {
                throw new CudaFailure("cuTensorMapEncodeTiled(" + m + ") failed: " + CUresult.stringFor(result));
            }
            return map.toArray(ValueLayout.JAVA_BYTE);
        }
    }

    private static volatile MethodHandle encodeTiled;

    /** The driver entry point, bound on first use. */
    private static MethodHandle encodeTiled() {
        MethodHandle h = encodeTiled;
        if (h == null) {
            SymbolLookup driver;
            try {
                driver = SymbolLookup.libraryLookup("libcuda.so.1", Arena.global());
            } catch (IllegalArgumentException e) {
                throw new CudaFailure("cannot load libcuda.so.1, the NVIDIA driver, to encode TMA tensor maps: " + e.getMessage());
            }
            h = Linker.nativeLinker().downcallHandle(
                    driver.find("cuTensorMapEncodeTiled")
                            .orElseThrow(() -> new CudaFailure("libcuda.so.1 has no cuTensorMapEncodeTiled: the driver predates CUDA 12")),
                    FunctionDescriptor.of(ValueLayout.JAVA_INT,
                            ValueLayout.ADDRESS, ValueLayout.JAVA_INT, ValueLayout.JAVA_INT, ValueLayout.ADDRESS,
                            ValueLayout.ADDRESS, ValueLayout.ADDRESS, ValueLayout.ADDRESS, ValueLayout.ADDRESS,
                            ValueLayout.JAVA_INT, ValueLayout.JAVA_INT, ValueLayout.JAVA_INT, ValueLayout.JAVA_INT));
            encodeTiled = h;
        }
        return h;
    }
}
