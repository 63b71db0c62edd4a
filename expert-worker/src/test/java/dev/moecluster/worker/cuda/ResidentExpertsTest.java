package dev.moecluster.worker.cuda;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.moecluster.core.model.Architecture;
import dev.moecluster.core.model.ModelConfig;
import dev.moecluster.core.model.ModelGenerator;
import dev.moecluster.core.moe.ExpertWeights;
import dev.moecluster.core.placement.ExpertAssignment;
import dev.moecluster.core.tensor.DType;
import dev.moecluster.core.tensor.Tensor;
import dev.moecluster.worker.BackendMemory;
import dev.moecluster.worker.ExpertBackend;
import dev.moecluster.worker.ExpertStore;
import dev.moecluster.worker.Round;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The cuda backend's expert lifecycle on an {@link EmulatedDeviceMemory}: loading uploads each expert's
 * weights in the kernels' layout, unloading frees exactly what loading took, the device's memory is the
 * worker's capacity, and a device that is full refuses with the expert, its bytes and the bytes free.
 */
class ResidentExpertsTest {
    private static final int HIDDEN = 64;
    private static final int INTERMEDIATE = 40;
    /** bf16 on the device whatever the checkpoint's dtype: gate and up {@code [I, H]}, down {@code [H, I]}. */
    private static final long EXPERT_BYTES = 2L * (2L * INTERMEDIATE * HIDDEN + (long) HIDDEN * INTERMEDIATE);

    private static List<ExpertWeights> experts(Arena arena, int n, DType dtype) {
        SplittableRandom r = new SplittableRandom(n);
        List<ExpertWeights> out = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            out.add(new ExpertWeights(random(arena, r, dtype, INTERMEDIATE, HIDDEN), random(arena, r, dtype, INTERMEDIATE, HIDDEN),
                    random(arena, r, dtype, HIDDEN, INTERMEDIATE)));
        }
        return out;
    }

    private static Tensor random(Arena arena, SplittableRandom r, DType dtype, int rows, int cols) {
        float[] v = new float[rows * cols];
        for (int i = 0; i < v.length; i++) {
            v[i] = (float) r.nextGaussian();
        }
        return Tensor.of(arena, dtype, new long[] {rows, cols}, v);
    }

    /** Asserts the device holds {@code w} as the kernels read it: gate/up interleaved, and down, in bf16. */
    private static void assertUploaded(EmulatedDeviceMemory device, ResidentExperts resident, ExpertWeights w) {
        ResidentExperts.DeviceExpert d = resident.get(w);
        assertThat(d).isNotNull();
        assertThat(d.gateUp().bytes()).isEqualTo(4L * INTERMEDIATE * HIDDEN);
        assertThat(d.down().bytes()).isEqualTo(2L * HIDDEN * INTERMEDIATE);
        assertThat(d.tensorMaps()).isNull();
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment gateUp = arena.allocate(d.gateUp().bytes());
            WeightLayout.writeGateUpRows(w, 0, WeightLayout.gateUpRows(w), gateUp);
            assertThat(device.contents(d.gateUp()).mismatch(gateUp)).isEqualTo(-1);
            MemorySegment down = arena.allocate(d.down().bytes());
            WeightLayout.writeDownRows(w, 0, WeightLayout.downRows(w), down);
            assertThat(device.contents(d.down()).mismatch(down)).isEqualTo(-1);
        }
    }

    @Test
    void loadingUploadsEachExpertAndUnloadingFreesExactlyItsBytes() {
        EmulatedDeviceMemory device = new EmulatedDeviceMemory(ResidentExperts.MEMORY_RESERVE_BYTES + 10 * EXPERT_BYTES);
        ResidentExperts resident = new ResidentExperts(device, false);
        try (Arena arena = Arena.ofConfined()) {
            List<ExpertWeights> experts = experts(arena, 4, DType.BF16);
            experts.forEach(resident::load);
            assertThat(device.usedBytes()).isEqualTo(4 * EXPERT_BYTES);
            assertThat(device.allocations()).isEqualTo(8);
            DeviceMemory held = resident.deviceMemory(0);
            assertThat(held.expertBytes()).isEqualTo(4 * EXPERT_BYTES);
            assertThat(held.residentExperts()).isEqualTo(4);
            assertThat(held.freeBytes()).isEqualTo(ResidentExperts.MEMORY_RESERVE_BYTES + 6 * EXPERT_BYTES);
            experts.forEach(w -> assertUploaded(device, resident, w));

            resident.load(experts.get(1)); // already there: nothing more is uploaded
            assertThat(device.usedBytes()).isEqualTo(4 * EXPERT_BYTES);

            assertThat(resident.unload(experts.get(1))).isTrue();
            assertThat(resident.unload(experts.get(3))).isTrue();
            assertThat(device.usedBytes()).isEqualTo(2 * EXPERT_BYTES);
            assertThat(device.allocations()).isEqualTo(4);
            assertThat(device.synchronizations()).as("waits for enqueued rounds before freeing").isEqualTo(2);
            assertThat(resident.get(experts.get(1))).isNull();
            assertThat(resident.deviceMemory(0).expertBytes()).isEqualTo(2 * EXPERT_BYTES);
            assertThat(resident.unload(experts.get(1))).as("not loaded any more").isFalse();
            assertThat(device.usedBytes()).isEqualTo(2 * EXPERT_BYTES);

            resident.load(experts.get(1)); // back after an unload
            assertThat(device.usedBytes()).isEqualTo(3 * EXPERT_BYTES);
            assertUploaded(device, resident, experts.get(1));

            experts.forEach(resident::unload);
            assertThat(device.usedBytes()).isZero();
            assertThat(device.allocations()).isZero();
            assertThat(resident.deviceMemory(0)).isEqualTo(
                    new DeviceMemory(0, 0, ResidentExperts.MEMORY_RESERVE_BYTES + 10 * EXPERT_BYTES,
                            ResidentExperts.MEMORY_RESERVE_BYTES + 10 * EXPERT_BYTES, 0));
        }
    }

    @Test
    void f32CheckpointsAreHeldOnTheDeviceAsBf16() {
        EmulatedDeviceMemory device = new EmulatedDeviceMemory(ResidentExperts.MEMORY_RESERVE_BYTES + 10 * EXPERT_BYTES);
        ResidentExperts resident = new ResidentExperts(device, false);
        try (Arena arena = Arena.ofConfined()) {
            ExpertWeights w = experts(arena, 1, DType.F32).getFirst();
            resident.load(w);
            assertThat(w.byteSize()).isEqualTo(2 * EXPERT_BYTES);
            assertThat(device.usedBytes()).isEqualTo(EXPERT_BYTES);
            assertUploaded(device, resident, w);
        }
    }

    @Test
    void fp8ExpertsAreHeldAtOneByteAWeightPlusTheirScalesAndUnloadingGivesItAllBack() {
        int hidden = 64;
        int inter = 48; // multiples of 16: FP8 rows need no padding
        long fp8Bytes = ExpertWeights.byteSize(DType.FP8_E4M3, hidden, inter);
        assertThat(fp8Bytes).isEqualTo(3L * hidden * inter + 4L * (2 * inter + hidden));
        long capacity = ResidentExperts.MEMORY_RESERVE_BYTES + 10 * fp8Bytes;
        EmulatedDeviceMemory device = new EmulatedDeviceMemory(capacity);
        // on Hopper too: FP8 experts run on the mma.sync kernels and get no tensor maps
        ResidentExperts resident = new ResidentExperts(device, true);
        try (Arena arena = Arena.ofConfined()) {
            SplittableRandom random = new SplittableRandom(5);
            List<ExpertWeights> experts = new ArrayList<>();
            for (int i = 0; i < 3; i++) {
                experts.add(CudaKernelEmulationTest.randomFp8(arena, random, hidden, inter, false));
            }
            experts.forEach(resident::load);
            assertThat(device.usedBytes()).isEqualTo(3 * fp8Bytes)
                    .isEqualTo(experts.stream().mapToLong(ExpertWeights::byteSize).sum());
            assertThat(device.allocations()).isEqualTo(6);
            assertThat(resident.memory(0)).isEqualTo(new BackendMemory(3 * fp8Bytes, 10 * fp8Bytes, 3));
            for (ExpertWeights w : experts) {
                ResidentExperts.DeviceExpert d = resident.get(w);
                assertThat(d.weights()).isEqualTo(DType.FP8_E4M3);
                assertThat(d.tensorMaps()).isNull();
                assertThat(d.gateUp().bytes()).isEqualTo(2L * inter * hidden + 4L * 2 * inter);
                assertThat(d.down().bytes()).isEqualTo((long) hidden * inter + 4L * hidden);
                assertFp8Uploaded(device, d, w);
            }

            assertThat(resident.unload(experts.get(1))).isTrue();
            assertThat(device.usedBytes()).isEqualTo(2 * fp8Bytes);
            assertThat(resident.memory(0).usedBytes()).isEqualTo(2 * fp8Bytes);
            experts.forEach(resident::unload);
            assertThat(device.usedBytes()).isZero();
            assertThat(device.allocations()).isZero();
            assertThat(resident.deviceMemory(0)).isEqualTo(new DeviceMemory(0, 0, capacity, capacity, 0));
        }
    }

    @Test
    void fp8RowsPaddedToSixteenCodesAreCountedAsTheDeviceHoldsThem() {
        try (Arena arena = Arena.ofConfined()) {
            ExpertWeights w = CudaKernelEmulationTest.randomFp8(arena, new SplittableRandom(3), HIDDEN, INTERMEDIATE, false);
            EmulatedDeviceMemory device = new EmulatedDeviceMemory(ResidentExperts.MEMORY_RESERVE_BYTES + 10 * EXPERT_BYTES);
            ResidentExperts resident = new ResidentExperts(device, false);
            resident.load(w);
            // down's rows hold 40 codes, padded to 48 on the device
            long padding = (long) HIDDEN * (48 - INTERMEDIATE);
            assertThat(device.usedBytes()).isEqualTo(w.byteSize() + padding);
            assertThat(resident.deviceMemory(0).expertBytes()).isEqualTo(w.byteSize() + padding);
            assertFp8Uploaded(device, resident.get(w), w);
            resident.unload(w);
            assertThat(device.usedBytes()).isZero();
        }
    }

    /** The device holds each FP8 matrix as WeightLayout lays it out, its scales right after its codes. */
    private static void assertFp8Uploaded(EmulatedDeviceMemory device, ResidentExperts.DeviceExpert d, ExpertWeights w) {
        long gateUpCodes = WeightLayout.gateUpRows(w) * WeightLayout.rowBytes(DType.FP8_E4M3, w.hiddenSize());
        long downCodes = WeightLayout.downRows(w) * WeightLayout.rowBytes(DType.FP8_E4M3, w.intermediateSize());
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment gateUp = arena.allocate(d.gateUp().bytes());
            WeightLayout.writeGateUpRows(w, 0, WeightLayout.gateUpRows(w), gateUp);
            WeightLayout.writeGateUpScales(w, 0, WeightLayout.gateUpRows(w), gateUp.asSlice(gateUpCodes));
            assertThat(device.contents(d.gateUp()).mismatch(gateUp)).isEqualTo(-1);
            MemorySegment down = arena.allocate(d.down().bytes());
            WeightLayout.writeDownRows(w, 0, WeightLayout.downRows(w), down);
            WeightLayout.writeDownScales(w, 0, WeightLayout.downRows(w), down.asSlice(downCodes));
            assertThat(device.contents(d.down()).mismatch(down)).isEqualTo(-1);
        }
        // the last scale of down is down's last channel's
        float last = device.contents(d.down()).get(java.lang.foreign.ValueLayout.JAVA_FLOAT_UNALIGNED
                .withOrder(java.nio.ByteOrder.LITTLE_ENDIAN), d.down().bytes() - 4);
        assertThat(last).isEqualTo(w.scales().down()[w.hiddenSize() - 1]);
    }

    @Test
    void aFullDeviceRefusesAnExpertNamingItsBytesAndKeepsWhatItHolds() {
        long capacity = ResidentExperts.MEMORY_RESERVE_BYTES + 2 * EXPERT_BYTES + EXPERT_BYTES / 2;
        EmulatedDeviceMemory device = new EmulatedDeviceMemory(capacity);
        ResidentExperts resident = new ResidentExperts(device, false);
        try (Arena arena = Arena.ofConfined()) {
            List<ExpertWeights> experts = experts(arena, 3, DType.BF16);
            resident.load(experts.get(0));
            resident.load(experts.get(1));
            long free = capacity - 2 * EXPERT_BYTES;
            assertThatThrownBy(() -> resident.load(experts.get(2)))
                    .isInstanceOf(CudaFailure.class)
                    .hasMessage("GPU memory is full: an expert of hidden " + HIDDEN + " x intermediate " + INTERMEDIATE
                            + " needs " + EXPERT_BYTES + " bytes (0 MiB) and " + free + " bytes (" + (free >> 20)
                            + " MiB) are free, 512 MiB of them kept for batch buffers (2 experts, " + 2 * EXPERT_BYTES
                            + " bytes resident); hold fewer experts on this worker");
            assertThat(resident.get(experts.get(2))).isNull();
            assertThat(device.usedBytes()).isEqualTo(2 * EXPERT_BYTES);
            assertThat(resident.deviceMemory(0).residentExperts()).isEqualTo(2);

            resident.unload(experts.get(0)); // room again
            resident.load(experts.get(2));
            assertUploaded(device, resident, experts.get(2));
            assertThat(device.usedBytes()).isEqualTo(2 * EXPERT_BYTES);
        }
    }

    @Test
    void anAllocationTheDriverRefusesLeavesNothingAllocated() {
        // the driver's free count said yes, the allocation of down says no (another process took the memory)
        long capacity = ResidentExperts.MEMORY_RESERVE_BYTES + EXPERT_BYTES;
        EmulatedDeviceMemory device = new EmulatedDeviceMemory(capacity) {
            @Override
            public long[] memoryInfo() {
                return new long[] {capacity, capacity};
            }

            @Override
            public Allocation allocate(long bytes) {
                if (bytes == 2L * HIDDEN * INTERMEDIATE) {
                    throw new CudaFailure("cuMemAlloc(" + bytes + " bytes) failed: CUDA_ERROR_OUT_OF_MEMORY");
                }
                return super.allocate(bytes);
            }
        };
        ResidentExperts resident = new ResidentExperts(device, false);
        try (Arena arena = Arena.ofConfined()) {
            ExpertWeights w = experts(arena, 1, DType.BF16).getFirst();
            assertThatThrownBy(() -> resident.load(w)).isInstanceOf(CudaFailure.class)
                    .hasMessage("cuMemAlloc(" + 2L * HIDDEN * INTERMEDIATE + " bytes) failed: CUDA_ERROR_OUT_OF_MEMORY");
            assertThat(device.allocations()).isZero();
            assertThat(resident.get(w)).isNull();
            assertThat(resident.deviceMemory(0).expertBytes()).isZero();
        }
    }

    @Test
    void theDevicesMemoryIsTheWorkersCapacityUnlessTheBudgetIsSmaller() {
        long capacity = ResidentExperts.MEMORY_RESERVE_BYTES + 100 * EXPERT_BYTES;
        EmulatedDeviceMemory device = new EmulatedDeviceMemory(capacity);
        ResidentExperts resident = new ResidentExperts(device, false);
        try (Arena arena = Arena.ofConfined()) {
            experts(arena, 3, DType.BF16).forEach(resident::load);
            long buffers = 64 << 10;
            BackendMemory memory = resident.memory(buffers);
            long room = capacity - buffers - ResidentExperts.MEMORY_RESERVE_BYTES;
            assertThat(memory).isEqualTo(new BackendMemory(3 * EXPERT_BYTES, room, 3));
            assertThat(memory.budget(0)).as("no --memory-budget").isEqualTo(room);
            assertThat(memory.budget(room / 2)).as("a smaller --memory-budget").isEqualTo(room / 2);
            assertThat(memory.budget(2 * room)).as("a larger --memory-budget").isEqualTo(room);
        }
        // a device smaller than the reserve can hold nothing
        assertThat(new ResidentExperts(new EmulatedDeviceMemory(ResidentExperts.MEMORY_RESERVE_BYTES / 2), false).memory(0)
                .capacityBytes()).isZero();
    }

    /**
     * What a cuda worker's expert store does with the emulated device: the backend's {@code load} is
     * {@link ResidentExperts#load}; it computes nothing.
     */
    private static final class EmulatedCudaExperts implements ExpertBackend {
        private final ResidentExperts resident;

        EmulatedCudaExperts(EmulatedDeviceMemory device) {
            this.resident = new ResidentExperts(device, false);
        }

        @Override
        public String name() {
            return "cuda";
        }

        @Override
        public void load(ExpertWeights expert) {
            resident.load(expert);
        }

        @Override
        public void unload(ExpertWeights expert) {
            resident.unload(expert);
        }

        @Override
        public BackendMemory memory() {
            return resident.memory(0);
        }

        @Override
        public PendingRound submit(Round round) {
            throw new UnsupportedOperationException("the emulated device holds experts but computes nothing");
        }
    }

    @Test
    void aWorkerLoadingPastItsDeviceNamesTheExpertAndItsBytes(@TempDir Path dir) throws IOException {
        ModelGenerator.generate(ModelGenerator.Spec.tiny(Architecture.MIXTRAL), dir);
        ModelConfig config = ModelConfig.load(dir);
        long expertBytes = 3L * config.hiddenSize() * config.expertIntermediateSize() * 2; // bf16 on the device
        EmulatedDeviceMemory device = new EmulatedDeviceMemory(ResidentExperts.MEMORY_RESERVE_BYTES + 2 * expertBytes);
        ExpertAssignment three = new ExpertAssignment(Map.of(0, Set.of(0, 1, 2)));
        assertThatThrownBy(() -> ExpertStore.load(dir, config, three, new EmulatedCudaExperts(device)))
                .isInstanceOf(IOException.class)
                .hasMessageContaining("cannot load expert 2 of layer 0: GPU memory is full: an expert of hidden "
                        + config.hiddenSize() + " x intermediate " + config.expertIntermediateSize() + " needs "
                        + expertBytes + " bytes");
        assertThat(device.allocations()).as("the store gave back what it had loaded").isZero();

        ExpertAssignment two = new ExpertAssignment(Map.of(0, Set.of(0, 1)));
        try (ExpertStore store = ExpertStore.load(dir, config, two, new EmulatedCudaExperts(device))) {
            assertThat(device.usedBytes()).isEqualTo(2 * expertBytes);
            assertThat(store.assignment()).isEqualTo(two);
        }
        assertThat(device.usedBytes()).as("closing the store unloads its experts").isZero();
    }

    @Test
    void aWorkerHoldsAnFp8CheckpointOnTheDeviceAtTheSizeThePlacementPlannedFor(@TempDir Path dir) throws IOException {
        ModelGenerator.Spec spec = new ModelGenerator.Spec(Architecture.LLAMA4, 2, 64, 96, 8, 0, 23, DType.BF16, 1)
                .withFp8Experts(true);
        ModelConfig config = ModelGenerator.generate(spec, dir);
        assertThat(config.expertDtype()).isEqualTo(DType.FP8_E4M3);
        long perExpert = ExpertWeights.byteSize(DType.FP8_E4M3, 64, 96); // what the planner and `moe plan` count
        EmulatedDeviceMemory device = new EmulatedDeviceMemory(ResidentExperts.MEMORY_RESERVE_BYTES + 3 * perExpert);
        EmulatedCudaExperts backend = new EmulatedCudaExperts(device);
        ExpertAssignment three = new ExpertAssignment(Map.of(1, Set.of(0, 2, 5)));
        try (ExpertStore store = ExpertStore.load(dir, config, three, backend)) {
            assertThat(store.get(1, 2).dtype()).isEqualTo(DType.FP8_E4M3);
            assertThat(device.usedBytes()).as("one byte a weight plus the scales, no bf16 copy").isEqualTo(3 * perExpert);
            assertThat(backend.memory().usedBytes()).isEqualTo(store.byteSize());
        }
        assertThat(device.usedBytes()).as("closing the store unloads its experts").isZero();
        assertThat(device.allocations()).isZero();
    }
}
