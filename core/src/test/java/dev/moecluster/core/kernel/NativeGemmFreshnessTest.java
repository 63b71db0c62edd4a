package dev.moecluster.core.kernel;

import static org.assertj.core.api.Assertions.assertThat;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.util.HexFormat;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The committed native library is what builds without gcc: its stamp must name the current source,
 * and where the same gcc is installed a fresh {@code build-native.sh} must give the same bytes.
 */
class NativeGemmFreshnessTest {
    static final Path SOURCE = Path.of("src/main/c/moe_gemm.c");
    static final Path LIBRARY = Path.of("src/main/resources/native/linux-x86_64/libmoegemm.so");
    static final Path STAMP = Path.of("src/main/resources/native/linux-x86_64/libmoegemm.so.source");
    static final String REBUILD = "regenerate it with core/src/main/c/build-native.sh and commit the library and its .source stamp";

    @Test
    void stampNamesTheCurrentSource() throws Exception {
        String sha = HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(Files.readAllBytes(SOURCE)));
        assertThat(Files.readAllLines(STAMP)).as("core/%s is stale: %s", LIBRARY, REBUILD).contains("sha256 " + sha);
    }

    @Test
    void aFreshBuildWithTheSameCompilerGivesTheCommittedBytes(@TempDir Path tmp) throws Exception {
        String compiler = run("gcc --version | head -1");
        assumeTrue(compiler != null, "gcc is not installed: the committed library is used as is");
        assumeTrue(Files.readAllLines(STAMP).contains("compiler " + compiler.strip()),
                "the committed library was built by another gcc than " + compiler.strip());
        Path fresh = tmp.resolve("libmoegemm.so");
        assertThat(run("bash src/main/c/build-native.sh " + fresh)).as("build-native.sh failed").isNotNull();
        assertThat(Files.readAllBytes(fresh)).as("core/%s is stale: %s", LIBRARY, REBUILD)
                .isEqualTo(Files.readAllBytes(LIBRARY));
    }

    /** Stdout of {@code command}, or null where it fails. */
    private static String run(String command) throws InterruptedException {
        try {
            Process p = new ProcessBuilder("bash", "-c", command).redirectError(ProcessBuilder.Redirect.DISCARD).start();
            String out = new String(p.getInputStream().readAllBytes());
            return p.waitFor(2, TimeUnit.MINUTES) && p.exitValue() == 0 && !out.isBlank() ? out : null;
        } catch (IOException e) {
            return null;
        }
    }
}
