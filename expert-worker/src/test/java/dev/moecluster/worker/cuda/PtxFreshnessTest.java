package dev.moecluster.worker.cuda;

import static org.assertj.core.api.Assertions.assertThat;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.moecluster.core.tensor.DType;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The committed PTX is what builds without nvcc package: where nvcc is installed, each file must equal
 * a fresh compile of its source with the flags of {@code build-ptx.sh}.
 */
class PtxFreshnessTest {
    static final Path CUDA_SOURCES = Path.of("src/main/cuda");
    static final Path COMMITTED_PTX = Path.of("src/main/resources/cuda");

    static boolean nvccAvailable() {
        try {
            Process p = new ProcessBuilder("bash", "-c", "command -v nvcc || test -x /usr/local/cuda/bin/nvcc")
                    .redirectErrorStream(true).start();
            p.getInputStream().readAllBytes();
            return p.waitFor(30, TimeUnit.SECONDS) && p.exitValue() == 0;
        } catch (IOException e) {
            return false;
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return false;
        }
    }

    @Test
    void committedPtxMatchesAFreshCompileOfTheSource(@TempDir Path tmp) throws Exception {
        assumeTrue(nvccAvailable(), "nvcc is not installed: the committed PTX is used as is");
        Process p = new ProcessBuilder("bash", CUDA_SOURCES.resolve("build-ptx.sh").toString(), tmp.toString())
                .redirectErrorStream(true).start();
        String log = new String(p.getInputStream().readAllBytes());
        assertThat(p.waitFor(5, TimeUnit.MINUTES)).isTrue();
        assertThat(p.exitValue()).as("build-ptx.sh failed:%n%s", log).isZero();

        for (String name : new String[] {"moe_ffn.ptx", "moe_ffn_sm90a.ptx"}) {
            Path committed = COMMITTED_PTX.resolve(name);
            assertThat(Files.readString(committed))
                    .as("expert-worker/%s is stale: regenerate it with expert-worker/src/main/cuda/build-ptx.sh"
                            + " expert-worker/%s and commit it", committed, COMMITTED_PTX)
                    .isEqualTo(Files.readString(tmp.resolve(name)));
        }
    }

    @Test
    void jarCarriesPtxWithEveryKernelTheBackendLoads() {
        String ptx = new String(FfnKernels.ptx(FfnKernels.PTX_RESOURCE));
        for (TileConfig t : TileConfig.of(false)) {
            assertThat(ptx).contains(".entry " + t.gateUpKernel() + "(", ".entry " + t.downKernel() + "(");
            assertThat(ptx).contains(".entry " + t.gateUpKernel(DType.FP8_E4M3) + "(", ".entry " + t.downKernel(DType.FP8_E4M3) + "(");
        }
        assertThat(ptx).contains(".entry moe_fill_random_bf16(", ".target sm_80", "fma.rn.bf16x2",
                "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32", "ldmatrix.sync.aligned.m8n8.x4.shared.b16",
                "cp.async.cg.shared.global");
    }

    @Test
    void jarCarriesHopperPtxWithEveryHopperKernel() {
        String ptx = new String(FfnKernels.ptx(FfnKernels.SM90A_PTX_RESOURCE));
        for (TileConfig t : TileConfig.of(true)) {
            assertThat(ptx).contains(".entry " + t.gateUpKernel() + "(", ".entry " + t.downKernel() + "(");
        }
        assertThat(ptx).contains(".target sm_90a", "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16",
                "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes",
                "mbarrier.try_wait.parity.shared::cta.b64", "setmaxnreg.inc.sync.aligned.u32");
    }
}
