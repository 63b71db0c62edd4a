package dev.moecluster.cli;

import static org.assertj.core.api.Assertions.assertThat;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The image's entrypoint (deploy/image/moe-launch.c), compiled as rootfs.sh compiles it and run with a
 * stand-in for java that prints the arguments it got: help and version requests, and no subcommand,
 * start without the incubator module (so the JDK prints no warning above the help); everything else
 * starts with the flags exactly as given.
 */
class ImageLauncherTest {
    private static final List<String> FLAGS = List.of("--add-modules", "jdk.incubator.vector,java.se",
            "--enable-native-access=ALL-UNNAMED", "-cp", "/app/classes", "dev.moecluster.cli.Moe");

    @TempDir
    static Path dir;
    static Path launcher;
    static Path java;

    @BeforeAll
    static void compile() throws Exception {
        assumeTrue(run(List.of("sh", "-c", "command -v cc")).exitCode == 0, "no C compiler (cc) here");
        launcher = dir.resolve("moe-launch");
        Result cc = run(List.of("cc", "-std=c11", "-O2", "-Wall", "-Wextra", "-Werror", "-D_POSIX_C_SOURCE=200809L",
                "-o", launcher.toString(), Path.of("../deploy/image/moe-launch.c").toString()));
        assertThat(cc.exitCode).as("cc: %s", cc.output).isZero();
        java = dir.resolve("java");
        Files.writeString(java, "#!/bin/sh\nprintf '%s\\n' \"$@\"\n");
        Files.setPosixFilePermissions(java, PosixFilePermissions.fromString("rwxr-xr-x"));
    }

    @Test
    void helpVersionAndNoSubcommandStartWithoutTheIncubatorModule() throws Exception {
        for (List<String> args : List.<List<String>>of(List.of("--help"), List.of("-V"), List.of(), List.of("worker", "-h"))) {
            List<String> expected = new ArrayList<>(FLAGS);
            expected.set(1, "java.se");
            expected.addAll(args);
            assertThat(launch(args)).as("moe %s", args).isEqualTo(expected);
        }
    }

    @Test
    void everyOtherCommandStartsWithTheFlagsAsGiven() throws Exception {
        List<String> args = List.of("demo", "--requests", "60");
        List<String> expected = new ArrayList<>(FLAGS);
        expected.addAll(args);
        assertThat(launch(args)).isEqualTo(expected);
    }

    @Test
    void aCommandLineWithoutTheMainClassIsRefused() throws Exception {
        Result r = run(List.of(launcher.toString(), java.toString(), "-version"));
        assertThat(r.exitCode).isEqualTo(127);
        assertThat(r.output).contains("dev.moecluster.cli.Moe is not among the arguments");
    }

    private static List<String> launch(List<String> args) throws Exception {
        List<String> command = new ArrayList<>(List.of(launcher.toString(), java.toString()));
        command.addAll(FLAGS);
        command.addAll(args);
        Result r = run(command);
        assertThat(r.exitCode).as(r.output).isZero();
        return r.output.isEmpty() ? List.of() : List.of(r.output.split("\n"));
    }

    private record Result(int exitCode, String output) {}

    private static Result run(List<String> command) throws IOException, InterruptedException {
        Process p = new ProcessBuilder(command).redirectErrorStream(true).start();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertThat(p.waitFor(30, TimeUnit.SECONDS)).isTrue();
        return new Result(p.exitValue(), out);
    }
}
