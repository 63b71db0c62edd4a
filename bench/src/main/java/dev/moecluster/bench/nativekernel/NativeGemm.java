package dev.moecluster.bench.nativekernel;

import static java.util.Objects.requireNonNull;

import dev.moecluster.core.tensor.Tensor;
import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.SymbolLookup;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandle;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * The experimental AVX2/FMA GEMM of {@code bench/native} bound through FFM, for measuring a native
 * kernel against the Vector API one. Single-threaded; same contract as
 * {@code Gemm.matmulTransposed}. Activations and outputs are heap arrays passed to a critical downcall
 * (no copy), weights are the tensor's own off-heap segment.
 */
public final class NativeGemm {
    /** System property naming the shared library; defaults to {@code bench/native/build/libmoegemm.so}. */
    public static final String LIBRARY_PROPERTY = "moe.bench.nativeGemm";

    private static final FunctionDescriptor SIGNATURE = FunctionDescriptor.ofVoid(
            ValueLayout.ADDRESS, ValueLayout.JAVA_INT, ValueLayout.JAVA_INT, ValueLayout.ADDRESS,
            ValueLayout.JAVA_INT, ValueLayout.ADDRESS, ValueLayout.JAVA_INT, ValueLayout.JAVA_INT);

    /** The register blocking of the micro-kernel: rows of A × rows of W per step. */
    public enum Blocking {
        /** 4 × 2, as core's {@code Gemm} today. */
        FOUR_BY_TWO(""),
        /** 4 × 3, as proposed for core's {@code Gemm}. */
        FOUR_BY_THREE("_4x3");

        private final String suffix;

        Blocking(String suffix) {
            this.suffix = suffix;
        }
    }

    private final MethodHandle bf16;
    private final MethodHandle f32;

    private NativeGemm(SymbolLookup lookup, Blocking blocking) {
        Linker linker = Linker.nativeLinker();
        // critical(true): the kernel neither blocks nor calls back, so heap float[]s may be passed as is.
        Linker.Option critical = Linker.Option.critical(true);
        bf16 = linker.downcallHandle(lookup.findOrThrow("moe_gemm_bt_bf16" + blocking.suffix), SIGNATURE, critical);
        f32 = linker.downcallHandle(lookup.findOrThrow("moe_gemm_bt_f32" + blocking.suffix), SIGNATURE, critical);
    }

    /** The library at {@link #libraryPath()}, loaded for the life of the JVM. */
    public static NativeGemm load(Blocking blocking) {
        requireNonNull(blocking, "blocking is null");
        Path path = libraryPath();
        if (!Files.isReadable(path)) {
            throw new IllegalStateException("native GEMM library " + path + " not found: run bench/native/build.sh"
                    + " or set -D" + LIBRARY_PROPERTY + "=<path to libmoegemm.so>");
        }
        return new NativeGemm(SymbolLookup.libraryLookup(path, Arena.global()), blocking);
    }

    /** Where {@link #load} looks for the library. */
    public static Path libraryPath() {
        return Path.of(System.getProperty(LIBRARY_PROPERTY, "bench/native/build/libmoegemm.so")).toAbsolutePath();
    }

    /** {@code c[r][n] = Σ_k a[r][k] · w[n][k]}, as {@code Gemm.matmulTransposed}, on the calling thread. */
    public void matmulTransposed(float[] a, int rows, int k, Tensor w, float[] c) {
        requireNonNull(w, "w is null");
        if (w.rank() != 2 || w.dim(1) != k) {
            throw new IllegalArgumentException("weight " + w + " does not take inputs of width " + k);
        }
        int n = Math.toIntExact(w.dim(0));
        if (a.length < rows * k || c.length < rows * n) {
            throw new IllegalArgumentException("buffers too small for " + rows + " rows");
        }
        MethodHandle kernel = switch (w.dtype()) {
            case BF16 -> bf16;
            case F32 -> f32;
            default -> throw new IllegalArgumentException("native GEMM takes f32 or bf16 weights, got " + w.dtype());
        };
        try {
            kernel.invokeExact(MemorySegment.ofArray(a), rows, k, w.data(), n, MemorySegment.ofArray(c), 0, n);
        } catch (Throwable t) {
            throw new IllegalStateException("native GEMM failed", t);
        }
    }
}
