package dev.moecluster.core.kernel;

import static java.util.Objects.requireNonNull;

import dev.moecluster.core.tensor.DType;
import dev.moecluster.core.tensor.Tensor;
import java.io.IOException;
import java.io.InputStream;
import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.SymbolLookup;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandle;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.Locale;
import java.util.Optional;

/**
 * The native expert GEMM ({@code core/src/main/c/moe_gemm.c}, AVX2 + FMA, carried in the jar for
 * linux-x86_64) bound through FFM. Same contract and the same column split across core's pool as
 * {@link Gemm} (FP8 weights go to {@link Gemm}'s kernel); weights are the tensor's own memory, activations heap arrays passed to critical
 * downcalls without a copy.
 */
public final class NativeGemm implements MatMul {
    /** System property naming a library to load instead of the one in the jar. */
    public static final String LIBRARY_PROPERTY = "moe.cpu.nativeLibrary";
    static final String RESOURCE = "/native/linux-x86_64/libmoegemm.so";
    /** Multiply-adds per downcall: about a millisecond of one core, so a safepoint waits at most that. */
    static final long MACS_PER_CALL = 1L << 24;

    private static final FunctionDescriptor GEMM = FunctionDescriptor.ofVoid(
            ValueLayout.ADDRESS, ValueLayout.JAVA_INT, ValueLayout.JAVA_INT, ValueLayout.ADDRESS,
            ValueLayout.JAVA_INT, ValueLayout.ADDRESS, ValueLayout.JAVA_INT, ValueLayout.JAVA_INT);

    private final MethodHandle bf16;
    private final MethodHandle f32;

    /** Whether the native kernel can run here: the kernel, or why not. */
    public record Availability(Optional<NativeGemm> gemm, String description) {
        public Availability {
            requireNonNull(gemm, "gemm is null");
            requireNonNull(description, "description is null");
        }
    }

    private static final class Probe {
        static final Availability RESULT = probeOnce();
    }

    private NativeGemm(MethodHandle bf16, MethodHandle f32) {
        this.bf16 = bf16;
        this.f32 = f32;
    }

    @Override
    public String name() {
        return "native";
    }

    /** The kernel of this machine, probed once per JVM: the jar's library (or {@link #LIBRARY_PROPERTY}'s). */
    public static Availability probe() {
        return Probe.RESULT;
    }

    private static Availability probeOnce() {
        String override = System.getProperty(LIBRARY_PROPERTY);
        if (override != null) {
            return load(Path.of(override));
        }
        String os = System.getProperty("os.name", "").toLowerCase(Locale.ROOT);
        String arch = System.getProperty("os.arch", "");
        if (!os.contains("linux") || !(arch.equals("amd64") || arch.equals("x86_64"))) {
            return unavailable("no native GEMM is built for " + os + "/" + arch);
        }
        try (InputStream in = NativeGemm.class.getResourceAsStream(RESOURCE)) {
            if (in == null) {
                return unavailable("the jar carries no " + RESOURCE);
            }
            Path file = Files.createTempFile("libmoegemm", ".so");
            file.toFile().deleteOnExit();
            Files.copy(in, file, StandardCopyOption.REPLACE_EXISTING);
            return load(file);
        } catch (IOException | RuntimeException e) {
            return unavailable("cannot extract " + RESOURCE + ": " + e);
        }
    }

    /**
     * Loads the library at {@code library} and checks the CPU has the instructions its kernels use.
     * Never throws: a missing or broken library, or a CPU without AVX2 and FMA, is an unavailable
     * result saying why.
     */
    public static Availability load(Path library) {
        try {
            SymbolLookup lookup = SymbolLookup.libraryLookup(library, Arena.global());
            Linker linker = Linker.nativeLinker();
            MethodHandle isa = linker.downcallHandle(lookup.findOrThrow("moe_gemm_isa"), FunctionDescriptor.of(ValueLayout.JAVA_INT));
            if ((int) isa.invokeExact() != 1) {
                return unavailable("this CPU lacks AVX2 or FMA, which " + library.getFileName() + " needs");
            }
            // critical(true): the kernels neither block nor call back, so heap float[]s pass without a copy.
            Linker.Option critical = Linker.Option.critical(true);
            NativeGemm gemm = new NativeGemm(
                    linker.downcallHandle(lookup.findOrThrow("moe_gemm_bt_bf16"), GEMM, critical),
                    linker.downcallHandle(lookup.findOrThrow("moe_gemm_bt_f32"), GEMM, critical));
            return new Availability(Optional.of(gemm), "AVX2+FMA kernel from " + library);
        } catch (Throwable t) {
            return unavailable("cannot load " + library + ": " + t);
        }
    }

    private static Availability unavailable(String why) {
        return new Availability(Optional.empty(), why);
    }

    @Override
    public void matmulTransposed(float[] a, int rows, int k, Tensor w, float[] c) {
        if (w.dtype() == DType.FP8_E4M3) {
            // The AVX2 library has no FP8 kernel: FP8 weights run on the Vector API one, which widens them in registers.
            Gemm.matmulTransposed(a, rows, k, w, c);
            return;
        }
        boolean isBf16 = Gemm.checkOperands(a, rows, k, w, c);
        Gemm.split(a, rows, k, w.data(), isBf16, c, Math.toIntExact(w.dim(0)), this::columns);
    }

    /**
     * Output columns {@code [from, to)} in downcalls of at most about {@link #MACS_PER_CALL}
     * multiply-adds: a critical downcall holds off safepoints (GC included) until it returns, so no
     * call may run for long.
     */
    private void columns(float[] a, int rows, int k, MemorySegment w, boolean isBf16, float[] c, int n, int from, int to) {
        long perColumn = Math.max(1L, (long) rows * k);
        int step = (int) Math.max(12, Math.min(Integer.MAX_VALUE, MACS_PER_CALL / perColumn / 12 * 12));
        MemorySegment aSeg = MemorySegment.ofArray(a);
        MemorySegment cSeg = MemorySegment.ofArray(c);
        try {
            for (int lo = from; lo < to; lo += step) {
                int hi = (int) Math.min(to, (long) lo + step);
                if (isBf16) {
                    bf16.invokeExact(aSeg, rows, k, w, n, cSeg, lo, hi);
                } else {
                    f32.invokeExact(aSeg, rows, k, w, n, cSeg, lo, hi);
                }
            }
        } catch (Throwable t) {
            throw new IllegalStateException("native GEMM failed", t);
        }
    }
}
