package dev.moecluster.core.runner;

import static org.assertj.core.api.Assertions.assertThat;

import dev.moecluster.core.tensor.Numerics;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * Drives {@code src/test/cuda/dense_emulator.cpp}, which runs the kernels of {@code src/main/cuda/dense.cu}
 * on the CPU: buffers and launches are written to a folder, the emulator runs them, outputs are read back.
 */
final class DenseEmulator {
    private final Path binary;

    private DenseEmulator(Path binary) {
        this.binary = binary;
    }

    /** Compiles the emulator into {@code dir}; null where g++ is missing. */
    static DenseEmulator compile(Path dir) throws IOException, InterruptedException {
        if (run(List.of("bash", "-c", "command -v g++"), dir) != 0) {
            return null;
        }
        Path binary = dir.resolve("dense_emulator");
        int rc = run(List.of("g++", "-std=c++17", "-O2", "-Wall", "-Wno-unknown-pragmas", "-o", binary.toString(),
                Path.of("src/test/cuda/dense_emulator.cpp").toAbsolutePath().toString()), dir);
        assertThat(rc).as("the emulator did not compile").isZero();
        return new DenseEmulator(binary);
    }

    /** One run: buffers, then launches in order. */
    Run newRun(Path dir) throws IOException {
        return new Run(Files.createDirectories(dir));
    }

    final class Run {
        private final Path dir;
        private final List<String> lines = new ArrayList<>();

        private Run(Path dir) {
            this.dir = dir;
        }

        Run f32(String name, float[] values) throws IOException {
            ByteBuffer b = ByteBuffer.allocate(4 * values.length).order(ByteOrder.LITTLE_ENDIAN);
            b.asFloatBuffer().put(values);
            return bytes(name, b.array());
        }

        Run bf16(String name, float[] values) throws IOException {
            ByteBuffer b = ByteBuffer.allocate(2 * values.length).order(ByteOrder.LITTLE_ENDIAN);
            for (float v : values) {
                b.putShort(Numerics.toBf16(v));
            }
            return bytes(name, b.array());
        }

        Run i32(String name, int[] values) throws IOException {
            ByteBuffer b = ByteBuffer.allocate(4 * values.length).order(ByteOrder.LITTLE_ENDIAN);
            b.asIntBuffer().put(values);
            return bytes(name, b.array());
        }

        Run f64(String name, double[] values) throws IOException {
            ByteBuffer b = ByteBuffer.allocate(8 * values.length).order(ByteOrder.LITTLE_ENDIAN);
            b.asDoubleBuffer().put(values);
            return bytes(name, b.array());
        }

        /** An output buffer of {@code bytes}, zeroed. */
        Run zeros(String name, long bytes) {
            lines.add("buffer " + name + " " + bytes);
            return this;
        }

        private Run bytes(String name, byte[] data) throws IOException {
            Files.write(dir.resolve(name + ".bin"), data);
            lines.add("buffer " + name + " " + data.length);
            return this;
        }

        /** A launch of {@code kernel} on grid (x, y, z) with {@code threads}; arguments are buffer names, null, or numbers (Integer, Long, Float). */
        Run launch(String kernel, int x, int y, int z, int threads, Object... args) {
            lines.add("launch " + kernel + " " + x + " " + y + " " + z + " " + threads);
            for (Object a : args) {
                lines.add(switch (a) {
                    case null -> "arg null";
                    case String name -> "arg buf " + name;
                    case Integer i -> "arg i32 " + i;
                    case Long l -> "arg i64 " + l;
                    case Float f -> "arg f32 " + Float.toString(f);
                    default -> throw new IllegalArgumentException("argument " + a);
                });
            }
            return this;
        }

        /** Runs the launches; fails the test with the emulator's output when it reports a fault. */
        Run execute() throws IOException, InterruptedException {
            Files.write(dir.resolve("launch.txt"), lines);
            Path log = dir.resolve("emulator.log");
            Process p = new ProcessBuilder(binary.toString(), dir.toString()).redirectErrorStream(true)
                    .redirectOutput(log.toFile()).start();
            assertThat(p.waitFor(10, TimeUnit.MINUTES)).isTrue();
            assertThat(p.exitValue()).as("dense_emulator failed:%n%s", Files.readString(log)).isZero();
            return this;
        }

        float[] f32(String name) throws IOException {
            ByteBuffer b = ByteBuffer.wrap(Files.readAllBytes(dir.resolve(name + ".out"))).order(ByteOrder.LITTLE_ENDIAN);
            float[] out = new float[b.remaining() / 4];
            b.asFloatBuffer().get(out);
            return out;
        }

        int[] i32(String name) throws IOException {
            ByteBuffer b = ByteBuffer.wrap(Files.readAllBytes(dir.resolve(name + ".out"))).order(ByteOrder.LITTLE_ENDIAN);
            int[] out = new int[b.remaining() / 4];
            b.asIntBuffer().get(out);
            return out;
        }

        /** A bf16 buffer widened to f32. */
        float[] bf16(String name) throws IOException {
            ByteBuffer b = ByteBuffer.wrap(Files.readAllBytes(dir.resolve(name + ".out"))).order(ByteOrder.LITTLE_ENDIAN);
            float[] out = new float[b.remaining() / 2];
            for (int i = 0; i < out.length; i++) {
                out[i] = Numerics.fromBf16(b.getShort());
            }
            return out;
        }
    }

    private static int run(List<String> command, Path dir) throws IOException, InterruptedException {
        Process p = new ProcessBuilder(command).directory(dir.toFile()).redirectErrorStream(true).start();
        String out = new String(p.getInputStream().readAllBytes());
        if (!p.waitFor(5, TimeUnit.MINUTES)) {
            p.destroyForcibly();
            return -1;
        }
        if (p.exitValue() != 0 && !command.getFirst().equals("bash")) {
            System.err.println(out);
        }
        return p.exitValue();
    }
}
