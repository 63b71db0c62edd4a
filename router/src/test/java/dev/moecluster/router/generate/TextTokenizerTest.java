package dev.moecluster.router.generate;

import static org.assertj.core.api.Assertions.assertThat;

import dev.moecluster.core.model.Architecture;
import dev.moecluster.core.model.ModelGenerator;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class TextTokenizerTest {
    @TempDir
    Path dir;

    @Test
    void encodesALongTextToAllItsTokens() throws Exception {
        ModelGenerator.generate(ModelGenerator.Spec.tiny(Architecture.LLAMA4), dir);
        try (TextTokenizer t = TextTokenizer.load(dir)) {
            String text = "The router gathers every token's hidden state and sends it to the workers; ".repeat(60);
            int[] ids = t.encode(text);
            // the tokenizer library's default would cut this at 512 tokens
            assertThat(ids.length).isGreaterThan(1200);
            assertThat(t.decode(ids)).isEqualTo(text);
        }
    }
}
