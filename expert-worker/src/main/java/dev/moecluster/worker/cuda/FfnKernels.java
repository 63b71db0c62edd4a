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

import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.EnumMap;
import java.util.List;
import java.util.Map;
import jcuda.Pointer;
import jcuda.driver.CUfunction;
import jcuda.driver.CUmodule;
import jcuda.driver.CUresult;
import jcuda.driver.CUstream;

/**
 * The kernels of {@code moe_ffn.cu}, loaded from the PTX resource with {@code cuModuleLoadData} (the
 * driver compiles the PTX for the device it runs on), and their launches.
 */
final class FfnKernels implements AutoCloseable {
    static final String PTX_RESOURCE = "/cuda/moe_ffn.ptx";

    private final CUmodule module = new CUmodule();
    private final Map<TileConfig, CUfunction> gateUp = new EnumMap<>(TileConfig.class);
    private final Map<TileConfig, CUfunction> down = new EnumMap<>(TileConfig.class);
    private final CUfunction fillRandom = new CUfunction();
    private final int multiprocessors;
    private final long loadNanos;
    private boolean closed;

    private FfnKernels(CudaDevice device) {
        this.multiprocessors = device.properties().multiprocessors();
        byte[] ptx = ptx();
        long start = System.nanoTime();
        int result = cuModuleLoadData(module, Arrays.copyOf(ptx, ptx.length + 1)); // the driver reads a C string
        if (result != CUresult.CUDA_SUCCESS) {
            String hint = result == CUresult.CUDA_ERROR_UNSUPPORTED_PTX_VERSION
                    ? " (the PTX was built by a newer nvcc than this driver knows: rebuild it with the CUDA version of the driver)"
                    : "";
            throw new CudaFailure("cuModuleLoadData(" + PTX_RESOURCE + ") failed: " + CUresult.stringFor(result) + hint);
        }
        this.loadNanos = System.nanoTime() - start;
        for (TileConfig t : TileConfig.values()) {
            if (t.sharedMemoryBytes() > device.properties().maxSharedPerBlock()) {
                throw new CudaFailure("kernel tile " + t.suffix() + " needs " + t.sharedMemoryBytes()
                        + " bytes of shared memory per block; " + device.properties().name() + " allows "
                        + device.properties().maxSharedPerBlock());
            }
            gateUp.put(t, function(t.gateUpKernel(), t.sharedMemoryBytes()));
            down.put(t, function(t.downKernel(), t.sharedMemoryBytes()));
        }
        CudaFailure.check(cuModuleGetFunction(fillRandom, module, "moe_fill_random_bf16"), "cuModuleGetFunction(moe_fill_random_bf16)");
    }

    /** Loads the module into the current context. */
    static FfnKernels load(CudaDevice device) {
        return new FfnKernels(device);
    }

    /** The PTX text bundled in the jar. */
    static byte[] ptx() {
        try (InputStream in = FfnKernels.class.getResourceAsStream(PTX_RESOURCE)) {
            if (in == null) {
                throw new IllegalStateException("resource " + PTX_RESOURCE + " is missing from the expert-worker jar");
            }
            return in.readAllBytes();
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read " + PTX_RESOURCE, e);
        }
    }

    private CUfunction function(String name, int sharedBytes) {
        CUfunction f = new CUfunction();
        CudaFailure.check(cuModuleGetFunction(f, module, name), "cuModuleGetFunction(" + name + ")");
        // Past 48 KiB a kernel must opt in to its dynamic shared memory.
        CudaFailure.check(cuFuncSetAttribute(f, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, sharedBytes),
                "cuFuncSetAttribute(" + name + ", max dynamic shared memory " + sharedBytes + ")");
        return f;
    }

    /** Time {@code cuModuleLoadData} took, mostly the driver's PTX compilation. */
    long loadNanos() {
        return loadNanos;
    }

    /** {@code act[rows, I] = silu(x · gateᵀ) * (x · upᵀ)}, bf16, for every expert of the plan. */
    void launchGateUp(LaunchPlan plan, long slots, long x, long act, CUstream stream) {
        launch(gateUp.get(plan.tile()), plan, slots, x, act, stream);
    }

    /** {@code y[rows, H] = act · downᵀ}, accumulated in f32 and written as bf16, for every expert of the plan. */
    void launchDown(LaunchPlan plan, long slots, long act, long y, CUstream stream) {
        launch(down.get(plan.tile()), plan, slots, act, y, stream);
    }

    private static void launch(CUfunction f, LaunchPlan plan, long slots, long a, long c, CUstream stream) {
        if (plan.gridSize() == 0) {
            return;
        }
        Pointer params = Pointer.to(
                Pointer.to(new long[] {slots}),
                Pointer.to(new int[] {plan.slotCount()}),
                Pointer.to(new long[] {a}),
                Pointer.to(new long[] {c}),
                Pointer.to(new int[] {plan.n()}),
                Pointer.to(new int[] {plan.k()}));
        TileConfig t = plan.tile();
        CudaFailure.check(cuLaunchKernel(f, plan.gridSize(), 1, 1, t.threads, 1, 1, t.sharedMemoryBytes(), stream, params, null),
                "cuLaunchKernel(" + t.suffix() + ", grid " + plan.gridSize() + ")");
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
        for (TileConfig t : TileConfig.values()) {
            lines.add(report(t.gateUpKernel(), gateUp.get(t)));
            lines.add(report(t.downKernel(), down.get(t)));
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
            CudaFailure.check(cuModuleUnload(module), "cuModuleUnload");
        }
    }
}
