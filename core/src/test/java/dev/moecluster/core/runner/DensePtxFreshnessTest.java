package dev.moecluster.core.runner;

import static org.assertj.core.api.Assertions.assertThat;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The committed PTX of the dense model's kernels is what builds without nvcc: where nvcc is installed,
 * it must equal a fresh compile of {@code src/main/cuda/dense.cu} with the flags of {@code build-ptx.sh}.
 */
class DensePtxFreshnessTest {
    static final Path COMMITTED_PTX = Path.of("src/main/resources/cuda/dense.ptx");

    static boolean nvccAvailable() throws IOException, InterruptedException {
        Process p = new ProcessBuilder("bash", "-c", "command -v nvcc || test -x /usr/local/cuda/bin/nvcc")
                .redirectErrorStream(true).start();
        p.getInputStream().readAllBytes();
        return p.waitFor(30, TimeUnit.SECONDS) && p.exitValue() == 0;
    }

    @Test
    void committedPtxMatchesAFreshCompileOfTheSource(@TempDir Path tmp) throws Exception {
        assumeTrue(nvccAvailable(), "nvcc is not installed: the committed PTX is used as is");
        Path fresh = tmp.resolve("dense.ptx");
        Process p = new ProcessBuilder("bash", "src/main/cuda/build-ptx.sh", fresh.toString())
                .redirectErrorStream(true).start();
        String log = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertThat(p.waitFor(5, TimeUnit.MINUTES)).isTrue();
        assertThat(p.exitValue()).as("build-ptx.sh failed:%n%s", log).isZero();
        assertThat(Files.readString(COMMITTED_PTX))
                .as("core/%s is stale: regenerate it with core/src/main/cuda/build-ptx.sh core/%s and commit it",
                        COMMITTED_PTX, COMMITTED_PTX)
                .isEqualTo(Files.readString(fresh));
    }

    @Test
    void jarCarriesPtxWithEveryKernel() throws IOException {
        String ptx;
        try (InputStream in = DensePtxFreshnessTest.class.getResourceAsStream("/cuda/dense.ptx")) {
            assertThat(in).as("cuda/dense.ptx on the class path").isNotNull();
            ptx = new String(in.readAllBytes(), StandardCharsets.US_ASCII);
        }
        assertThat(ptx).contains(".target sm_80");
        for (String kernel : new String[] {"dense_embed", "dense_rms_norm", "dense_rope", "dense_attn_temperature",
                "dense_add", "dense_kv_write", "dense_paged_decode_attention", "dense_paged_decode_combine",
                "dense_sample"}) {
            assertThat(ptx).contains(".entry " + kernel + "(");
        }
    }
}
