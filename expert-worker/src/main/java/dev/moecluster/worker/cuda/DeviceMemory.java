package dev.moecluster.worker.cuda;

/**
 * Device memory as the cuda backend accounts it: what its experts and its batch buffers hold, and what
 * the driver reports free and in total ({@code cuMemGetInfo}, all processes on the device counted).
 *
 * @param expertBytes bytes of expert weights resident on the device
 * @param bufferBytes bytes of device activation buffers the backend holds
 * @param freeBytes free device memory
 * @param totalBytes device memory in total
 * @param residentExperts experts whose weights are on the device
 */
public record DeviceMemory(long expertBytes, long bufferBytes, long freeBytes, long totalBytes, int residentExperts) {}
