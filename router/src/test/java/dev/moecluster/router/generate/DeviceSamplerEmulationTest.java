package dev.moecluster.router.generate;

import static org.assertj.core.api.Assertions.assertThat;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The device sampler ({@code dense_sample} in {@code core/src/main/cuda/dense.cu}), run on the CPU by
 * core's kernel emulator, chooses the tokens {@link Sampler} chooses for the same logits and seed:
 * greedy with ties, top-k, top-p inside top-k, and -1 (sample on the host) where top_k is beyond what
 * the kernel selects.
 */
class DeviceSamplerEmulationTest {
    private static final Path EMULATOR_SOURCE = Path.of("../core/src/test/cuda/dense_emulator.cpp");
    private static final int VOCAB = 1000;

    @Test
    void deviceSamplerChoosesWhatTheHostSamplerChooses(@TempDir Path dir) throws Exception {
        assumeTrue(run(List.of("bash", "-c", "command -v g++"), dir) == 0, "g++ is not installed");
        Path emulator = dir.resolve("dense_emulator");
        assertThat(run(List.of("g++", "-std=c++17", "-O2", "-o", emulator.toString(),
                EMULATOR_SOURCE.toAbsolutePath().toString()), dir)).as("the emulator did not compile").isZero();

        // temperature, top_k, top_p per row; seeds differ per row
        float[] temperature = {0f, 0f, 0.7f, 1f, 1.3f, 0.7f, 1f, 0.5f, 1f, 1f};
        int[] topK = {0, 5, 40, 1, 256, 40, 20, 3, 0, 300};
        float[] topP = {1f, 1f, 1f, 1f, 1f, 0.9f, 0.5f, 0.99f, 1f, 1f};
        int rows = temperature.length;
        SplittableRandom random = new SplittableRandom(11);
        float[] logits = new float[rows * VOCAB];
        for (int i = 0; i < logits.length; i++) {
            // coarse values so ties between tokens are common
            logits[i] = Math.round(random.nextGaussian() * 8) / 4f;
        }
        logits[1 * VOCAB + 700] = 50f; // row 1: a tie for the maximum between tokens 300 and 700
        logits[1 * VOCAB + 300] = 50f;
        double[] uniform = new double[rows];
        long[] seeds = new long[rows];
        for (int r = 0; r < rows; r++) {
            seeds[r] = 1000L + r;
            uniform[r] = new SplittableRandom(seeds[r]).nextDouble();
        }
        write(dir.resolve("logits.bin"), floats(logits));
        write(dir.resolve("temperature.bin"), floats(temperature));
        write(dir.resolve("top_k.bin"), ints(topK));
        write(dir.resolve("top_p.bin"), floats(topP));
        ByteBuffer u = ByteBuffer.allocate(8 * rows).order(ByteOrder.LITTLE_ENDIAN);
        u.asDoubleBuffer().put(uniform);
        write(dir.resolve("uniform.bin"), u.array());
        Files.write(dir.resolve("launch.txt"), List.of(
                "buffer tokens " + 4 * rows, "buffer logits " + 4 * logits.length, "buffer temperature " + 4 * rows,
                "buffer top_k " + 4 * rows, "buffer top_p " + 4 * rows, "buffer uniform " + 8 * rows,
                "launch dense_sample " + rows + " 1 1 128", "arg buf tokens", "arg buf logits", "arg i32 " + VOCAB,
                "arg buf temperature", "arg buf top_k", "arg buf top_p", "arg buf uniform"));
        assertThat(run(List.of(emulator.toString(), dir.toString()), dir)).as("the emulator failed").isZero();
        ByteBuffer out = ByteBuffer.wrap(Files.readAllBytes(dir.resolve("tokens.out"))).order(ByteOrder.LITTLE_ENDIAN);

        List<Integer> device = new ArrayList<>();
        List<Integer> host = new ArrayList<>();
        for (int r = 0; r < rows; r++) {
            device.add(out.getInt());
            boolean onDevice = temperature[r] == 0f || (topK[r] >= 1 && topK[r] <= 256);
            float[] row = java.util.Arrays.copyOfRange(logits, r * VOCAB, (r + 1) * VOCAB);
            host.add(onDevice ? new Sampler(temperature[r], topP[r], topK[r], seeds[r]).sample(row) : -1);
        }
        assertThat(device).isEqualTo(host);
        assertThat(device.get(1)).as("ties go to the lower index").isEqualTo(300);
        assertThat(device.subList(8, 10)).as("top_k 0 and 300 are left to the host").containsExactly(-1, -1);
        assertThat(device.stream().distinct().count()).as("rows do not all pick one token").isGreaterThan(4);
    }

    private static byte[] floats(float[] v) {
        ByteBuffer b = ByteBuffer.allocate(4 * v.length).order(ByteOrder.LITTLE_ENDIAN);
        b.asFloatBuffer().put(v);
        return b.array();
    }

    private static byte[] ints(int[] v) {
        ByteBuffer b = ByteBuffer.allocate(4 * v.length).order(ByteOrder.LITTLE_ENDIAN);
        b.asIntBuffer().put(v);
        return b.array();
    }

    private static void write(Path file, byte[] data) throws java.io.IOException {
        Files.write(file, data);
    }

    private static int run(List<String> command, Path dir) throws Exception {
        Process p = new ProcessBuilder(command).directory(dir.toFile()).redirectErrorStream(true).start();
        String log = new String(p.getInputStream().readAllBytes());
        assertThat(p.waitFor(5, TimeUnit.MINUTES)).isTrue();
        if (p.exitValue() != 0 && !command.getFirst().equals("bash")) {
            System.err.println(log);
        }
        return p.exitValue();
    }
}
