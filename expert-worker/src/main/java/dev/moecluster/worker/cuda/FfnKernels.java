package dev.moecluster.worker.cuda;

import static jcuda.driver.CUfunction_attribute.CU_FUNC_ATTRIBUTE_LOCAL_SIZE_BYTES;
import static jcuda.driver.CUfunction_attribute.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES;
import static jcuda.driver.CUfunction_attribute.CU_FUNC_ATTRIBUTE_NUM_REGS;
import static jcuda.driver.JCudaDriver.cuFuncGetAttribute;
import static jcuda.driver.JCudaDriver.cuFuncSetAttribute;
import static jcuda.driver.JCudaDriver.cuLaunchKernel;
import static jcuda.driver.JCudaDriver.cuModuleGetFunction;
import static jcuda.driver.JCudaDriver.cuModuleLoadData;
import static jcuda.driver.JCudaDriver.cuModuleUnload;

import dev.moecluster.core.tensor.DType;
import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.EnumMap;
import java.util.List;
import java.util.Map;
import java.util.logging.Logger;
import jcuda.Pointer;
import jcuda.driver.CUfunction;
import jcuda.driver.CUmodule;
import jcuda.driver.CUresult;
import jcuda.driver.CUstream;

/**
 * The kernels of {@code moe_ffn.cu}, loaded from the PTX resource with {@code cuModuleLoadData} (the
 * driver compiles the PTX for the device it runs on), and their launches: for every mma.sync tile a
 * bf16-weight and an FP8-weight pair. Where the device reports compute capability 9.0 the Hopper kernels
 * of {@code moe_ffn_sm90.cu} are loaded too, from their sm_90a PTX, and the backend prefers them for bf16
 * weights; the mma.sync kernels stay loaded for FP8 weights, as the fallback and for the device check's
 * side-by-side timing.
 */
final class FfnKernels implements AutoCloseable {
    private static final Logger LOG = Logger.getLogger(FfnKernels.class.getName());
    static final String PTX_RESOURCE = "/cuda/moe_ffn.ptx";
    static final String SM90A_PTX_RESOURCE = "/cuda/moe_ffn_sm90a.ptx";

    private final CUmodule module = new CUmodule();
    private final CUmodule sm90Module = new CUmodule();
    private final boolean hopper;
    private final Map<TileConfig, CUfunction> gateUp = new EnumMap<>(TileConfig.class);
    private final Map<TileConfig, CUfunction> down = new EnumMap<>(TileConfig.class);
    private final Map<TileConfig, CUfunction> gateUpFp8 = new EnumMap<>(TileConfig.class);
    private final Map<TileConfig, CUfunction> downFp8 = new EnumMap<>(TileConfig.class);
    private final CUfunction fillRandom = new CUfunction();
    private final int multiprocessors;
    private final long loadNanos;
    private boolean closed;

    private FfnKernels(CudaDevice device) {
        CudaDevice.Properties p = device.properties();
        this.multiprocessors = p.multiprocessors();
        long start = System.nanoTime();
        load(module, PTX_RESOURCE);
        // sm_90a PTX (wgmma, TMA) loads on compute capability 9.0 exactly, not on later GPUs.
        boolean sm90 = p.major() == 9 && p.minor() == 0 && !Boolean.getBoolean("moe.cuda.noSm90");
        if (sm90) {
            try {
                load(sm90Module, SM90A_PTX_RESOURCE);
            } catch (CudaFailure e) {
                LOG.warning("Hopper kernels unavailable, using the mma.sync kernels: " + e.getMessage());
                sm90 = false;
            }
        }
        this.hopper = sm90;
        this.loadNanos = System.nanoTime() - start;
        for (TileConfig t : TileConfig.values()) {
            if (t.hopper && !hopper) {
                continue;
            }
            if (t.sharedMemoryBytes() > p.maxSharedPerBlock()) {
                throw new CudaFailure("kernel tile " + t.suffix() + " needs " + t.sharedMemoryBytes()
                        + " bytes of shared memory per block; " + p.name() + " allows " + p.maxSharedPerBlock());
            }
            CUmodule m = t.hopper ? sm90Module : module;
            gateUp.put(t, function(m, t.gateUpKernel(), t.sharedMemoryBytes()));
            down.put(t, function(m, t.downKernel(), t.sharedMemoryBytes()));
            if (!t.hopper) {
                int fp8Shared = t.sharedMemoryBytes(DType.FP8_E4M3);
                gateUpFp8.put(t, function(module, t.gateUpKernel(DType.FP8_E4M3), fp8Shared));
                downFp8.put(t, function(module, t.downKernel(DType.FP8_E4M3), fp8Shared));
            }
        }
        CudaFailure.check(cuModuleGetFunction(fillRandom, module, "moe_fill_random_bf16"), "cuModuleGetFunction(moe_fill_random_bf16)");
    }

    private static void load(CUmodule m, String resource) {
        byte[] ptx = ptx(resource);
        int result = cuModuleLoadData(m, Arrays.copyOf(ptx, ptx.length + 1)); // the driver reads a C string
        if (result != CUresult.CUDA_SUCCESS) {
            String hint = result == CUresult.CUDA_ERROR_UNSUPPORTED_PTX_VERSION
                    ? " (the PTX was built by a newer nvcc than this driver knows: rebuild it with the CUDA version of the driver)"
                    : "";
            throw new CudaFailure("cuModuleLoadData(" + resource + ") failed: " + CUresult.stringFor(result) + hint);
        }
    }

    /** Loads the modules into the current context. */
    static FfnKernels load(CudaDevice device) {
        return new FfnKernels(device);
    }

    /** The PTX text of {@code resource} bundled in the jar. */
    static byte[] ptx(String resource) {
        try (InputStream in = FfnKernels.class.getResourceAsStream(resource)) {
            if (in == null) {
                throw new IllegalStateException("resource " + resource + " is missing from the expert-worker jar");
            }
            return in.readAllBytes();
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read " + resource, e);
        }
    }

    private static CUfunction function(CUmodule m, String name, int sharedBytes) {
        CUfunction f = new CUfunction();
        CudaFailure.check(cuModuleGetFunction(f, m, name), "cuModuleGetFunction(" + name + ")");
        // Past 48 KiB a kernel must opt in to its dynamic shared memory.
        CudaFailure.check(cuFuncSetAttribute(f, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, sharedBytes),
                "cuFuncSetAttribute(" + name + ", max dynamic shared memory " + sharedBytes + ")");
        return f;
    }

    /** Whether the Hopper (sm_90a) kernels are loaded: the device is compute capability 9.0. */
    boolean hopper() {
        return hopper;
    }

    /** The tiles whose kernels are loaded. */
    List<TileConfig> tiles() {
        return List.copyOf(gateUp.keySet());
    }

    /** Time {@code cuModuleLoadData} took, mostly the driver's PTX compilation. */
    long loadNanos() {
        return loadNanos;
    }

    /**
     * {@code act[rows, I] = silu(x · gateᵀ) * (x · upᵀ)}, bf16, for every expert of the plan, with the
     * kernel for the plan's weight dtype. For a Hopper tile the slot table's weight addresses are those of
     * the experts' gate/up tensor maps.
     */
    void launchGateUp(LaunchPlan plan, long slots, long x, long act, CUstream stream) {
        launch(plan.weights() == DType.FP8_E4M3 ? gateUpFp8 : gateUp, plan, slots, x, act, stream);
    }

    /** {@code y[rows, H] = act · downᵀ}, accumulated in f32 and written as bf16, for every expert of the plan. */
    void launchDown(LaunchPlan plan, long slots, long act, long y, CUstream stream) {
        launch(plan.weights() == DType.FP8_E4M3 ? downFp8 : down, plan, slots, act, y, stream);
    }

    private void launch(Map<TileConfig, CUfunction> kernels, LaunchPlan plan, long slots, long a, long c, CUstream stream) {
        if (plan.gridSize() == 0) {
            return;
        }
        TileConfig t = plan.tile();
        CUfunction f = kernels.get(t);
        if (f == null) {
            throw new IllegalStateException("tile " + t.suffix() + " is not loaded on this device");
        }
        if (t.hopper) {
            launchHopper(f, plan, slots, a, c, stream);
            return;
        }
        Pointer params = Pointer.to(
                Pointer.to(new long[] {slots}),
                Pointer.to(new int[] {plan.slotCount()}),
                Pointer.to(new long[] {a}),
                Pointer.to(new long[] {c}),
                Pointer.to(new int[] {plan.n()}),
                Pointer.to(new int[] {plan.k()}));
        CudaFailure.check(cuLaunchKernel(f, plan.gridSize(), 1, 1, t.threads, 1, 1, t.sharedMemoryBytes(plan.weights()), stream,
                params, null), "cuLaunchKernel(" + plan + ")");
    }

    /**
     * A persistent launch, one block per multiprocessor walking all of the plan's tiles; A's tensor map
     * (the round's packed rows) is encoded here and passed by value as a {@code __grid_constant__}.
     */
    private void launchHopper(CUfunction f, LaunchPlan plan, long slots, long a, long c, CUstream stream) {
        TileConfig t = plan.tile();
        byte[] aMap = TensorMaps.encode(new TensorMaps.Bf16Matrix(a, plan.totalRows(), plan.k(), t.bm));
        Pointer params = Pointer.to(
                Pointer.to(new long[] {slots}),
                Pointer.to(new int[] {plan.slotCount()}),
                Pointer.to(new int[] {plan.gridSize()}),
                Pointer.to(aMap),
                Pointer.to(new long[] {c}),
                Pointer.to(new int[] {plan.n()}),
                Pointer.to(new int[] {plan.k()}));
        int grid = Sm90Layout.persistentGrid(plan.gridSize(), multiprocessors);
        CudaFailure.check(cuLaunchKernel(f, grid, 1, 1, t.threads, 1, 1, t.sharedMemoryBytes(), stream, params, null),
                "cuLaunchKernel(" + t.suffix() + ", " + plan.gridSize() + " tiles on " + grid + " blocks)");
    }

    /** Fills {@code count} bf16 values at {@code dst} with uniform values in {@code [-scale, scale)}. */
    void fillRandomBf16(long dst, long count, int seed, float scale, CUstream stream) {
        Pointer params = Pointer.to(
                Pointer.to(new long[] {dst}),
                Pointer.to(new long[] {count}),
                Pointer.to(new int[] {seed}),
                Pointer.to(new float[] {scale}));
        CudaFailure.check(cuLaunchKernel(fillRandom, multiprocessors * 8, 1, 1, 256, 1, 1, 0, stream, params, null),
                "cuLaunchKernel(moe_fill_random_bf16)");
    }

    /** Registers and local (spill) bytes per thread of each FFN kernel, as the driver compiled them. */
    List<String> resourceReport() {
        List<String> lines = new ArrayList<>();
        for (TileConfig t : gateUp.keySet()) {
            lines.add(report(t.gateUpKernel(), gateUp.get(t)));
            lines.add(report(t.downKernel(), down.get(t)));
        }
        for (TileConfig t : gateUpFp8.keySet()) {
            lines.add(report(t.gateUpKernel(DType.FP8_E4M3), gateUpFp8.get(t)));
            lines.add(report(t.downKernel(DType.FP8_E4M3), downFp8.get(t)));
        }
        return lines;
    }

    private static String report(String name, CUfunction f) {
        int[] regs = new int[1];
        int[] local = new int[1];
        CudaFailure.check(cuFuncGetAttribute(regs, CU_FUNC_ATTRIBUTE_NUM_REGS, f), "cuFuncGetAttribute");
        CudaFailure.check(cuFuncGetAttribute(local, CU_FUNC_ATTRIBUTE_LOCAL_SIZE_BYTES, f), "cuFuncGetAttribute");
        return name + ": " + regs[0] + " registers, " + local[0] + " bytes local memory per thread";
    }

    @Override
    public void close() {
        if (!closed) {
            closed = true;
            if (hopper) {
                CudaFailure.check(cuModuleUnload(sm90Module), "cuModuleUnload");
            }
            CudaFailure.check(cuModuleUnload(module), "cuModuleUnload");
        }
    }
}
