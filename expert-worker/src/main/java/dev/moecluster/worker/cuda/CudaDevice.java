package dev.moecluster.worker.cuda;

import static jcuda.driver.CUdevice_attribute.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR;
import static jcuda.driver.CUdevice_attribute.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR;
import static jcuda.driver.CUdevice_attribute.CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN;
import static jcuda.driver.CUdevice_attribute.CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT;
import static jcuda.driver.JCudaDriver.cuCtxSetCurrent;
import static jcuda.driver.JCudaDriver.cuDeviceGet;
import static jcuda.driver.JCudaDriver.cuDeviceGetAttribute;
import static jcuda.driver.JCudaDriver.cuDeviceGetCount;
import static jcuda.driver.JCudaDriver.cuDeviceGetName;
import static jcuda.driver.JCudaDriver.cuDevicePrimaryCtxRelease;
import static jcuda.driver.JCudaDriver.cuDevicePrimaryCtxRetain;
import static jcuda.driver.JCudaDriver.cuDeviceTotalMem;
import static jcuda.driver.JCudaDriver.cuDriverGetVersion;
import static jcuda.driver.JCudaDriver.cuMemGetInfo;

import java.nio.charset.StandardCharsets;
import java.util.Locale;
import jcuda.driver.CUcontext;
import jcuda.driver.CUdevice;

/**
 * One GPU and its primary context (the context the CUDA runtime would use too). The driver binds a
 * context to a thread, so every entry point of the backend calls {@link #makeCurrent} first.
 */
final class CudaDevice implements AutoCloseable {
    /** What the driver says about a device. */
    record Properties(String name, int major, int minor, int multiprocessors, int maxSharedPerBlock,
            long totalBytes, int driverVersion) {
        String describe() {
            return String.format(Locale.ROOT, "%s, sm_%d%d, %d SMs, %.1f GiB, driver %d.%d", name, major, minor,
                    multiprocessors, totalBytes / (double) (1L << 30), driverVersion / 1000, driverVersion % 1000 / 10);
        }
    }

    private final int ordinal;
    private final CUdevice device;
    private final CUcontext context = new CUcontext();
    private final Properties properties;
    private boolean closed;

    private CudaDevice(int ordinal, CUdevice device, Properties properties) {
        this.ordinal = ordinal;
        this.device = device;
        this.properties = properties;
    }

    /** Retains device {@code ordinal}'s primary context and makes it current on this thread. */
    static CudaDevice open(int ordinal) {
        CudaAvailability availability = CudaAvailability.probe();
        if (!availability.usable()) {
            throw new CudaFailure("cuda backend unavailable: " + availability.description());
        }
        int[] count = new int[1];
        CudaFailure.check(cuDeviceGetCount(count), "cuDeviceGetCount");
        if (ordinal < 0 || ordinal >= count[0]) {
            throw new CudaFailure("no CUDA device " + ordinal + " (this machine has " + count[0] + ")");
        }
        Properties p = properties(ordinal);
        if (p.major() < CudaAvailability.MIN_MAJOR) {
            throw new CudaFailure(p.name() + " has compute capability " + p.major() + "." + p.minor()
                    + "; the cuda backend needs " + CudaAvailability.MIN_MAJOR + ".0 or later");
        }
        CUdevice device = new CUdevice();
        CudaFailure.check(cuDeviceGet(device, ordinal), "cuDeviceGet");
        CudaDevice d = new CudaDevice(ordinal, device, p);
        CudaFailure.check(cuDevicePrimaryCtxRetain(d.context, device), "cuDevicePrimaryCtxRetain");
        d.makeCurrent();
        return d;
    }

    static Properties properties(int ordinal) {
        CUdevice device = new CUdevice();
        CudaFailure.check(cuDeviceGet(device, ordinal), "cuDeviceGet");
        byte[] name = new byte[256];
        CudaFailure.check(cuDeviceGetName(name, name.length, device), "cuDeviceGetName");
        int len = 0;
        while (len < name.length && name[len] != 0) {
            len++;
        }
        long[] total = new long[1];
        CudaFailure.check(cuDeviceTotalMem(total, device), "cuDeviceTotalMem");
        int[] driver = new int[1];
        CudaFailure.check(cuDriverGetVersion(driver), "cuDriverGetVersion");
        return new Properties(new String(name, 0, len, StandardCharsets.US_ASCII),
                attribute(device, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR),
                attribute(device, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR),
                attribute(device, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT),
                attribute(device, CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN),
                total[0], driver[0]);
    }

    private static int attribute(CUdevice device, int attribute) {
        int[] v = new int[1];
        CudaFailure.check(cuDeviceGetAttribute(v, attribute, device), "cuDeviceGetAttribute(" + attribute + ")");
        return v[0];
    }

    int ordinal() {
        return ordinal;
    }

    Properties properties() {
        return properties;
    }

    void makeCurrent() {
        CudaFailure.check(cuCtxSetCurrent(context), "cuCtxSetCurrent");
    }

    /** {@code {free, total}} device bytes, from {@code cuMemGetInfo}. */
    long[] memoryInfo() {
        long[] free = new long[1];
        long[] total = new long[1];
        CudaFailure.check(cuMemGetInfo(free, total), "cuMemGetInfo");
        return new long[] {free[0], total[0]};
    }

    @Override
    public void close() {
        if (!closed) {
            closed = true;
            CudaFailure.check(cuDevicePrimaryCtxRelease(device), "cuDevicePrimaryCtxRelease");
        }
    }
}
