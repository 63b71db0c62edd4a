package dev.moecluster.cli;

import static org.assertj.core.api.Assertions.assertThat;

import dev.moecluster.core.model.Architecture;
import dev.moecluster.core.model.ModelGenerator;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;

/**
 * {@code moe probe} takes MoeForward answers above gRPC's default 4 MiB inbound limit, up to what the
 * router itself accepts: a real cluster on loopback, the CLI's own channel.
 */
class ProbeLargeResponseTest {

    @Test
    void probeReceivesAnAnswerLargerThanFourMebibytesUpToItsMaxMessageSize() throws Exception {
        // hidden 256 in f32: 1 KiB a token, so 5000 tokens come back as 5,120,000 bytes of hidden states
        Path model = Clusters.model(ModelGenerator.Spec.tiny(Architecture.MIXTRAL).withSize(2, 256, 32, 4));
        int tokens = 5000;
        assertThat((long) tokens * 256 * Float.BYTES).isGreaterThan(4L << 20);
        try (LocalCluster cluster = LocalCluster.start(LocalCluster.Options.of(model, 1, 1))) {
            Object[] r = MoeCommandTest.run("probe", "--target", cluster.router().address(), "--model", model.toString(),
                    "--requests", "2", "--tokens", String.valueOf(tokens));
            assertThat(r[0]).as(r[1] + "" + r[2]).isEqualTo(0);
            assertThat((String) r[1]).contains("checked 2 results against the reference", "OK");

            // --max-message-mb lowers the limit: the same answer is then refused on the client side.
            Object[] small = MoeCommandTest.run("probe", "--target", cluster.router().address(), "--requests", "1",
                    "--tokens", String.valueOf(tokens), "--max-message-mb", "4");
            assertThat(small[0]).as(small[1] + "" + small[2]).isNotEqualTo(0);
            assertThat((String) small[2]).contains("RESOURCE_EXHAUSTED", "exceeds maximum size 4194304");
        }
    }
}
