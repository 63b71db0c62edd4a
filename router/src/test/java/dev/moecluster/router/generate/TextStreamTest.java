package dev.moecluster.router.generate;

import static org.assertj.core.api.Assertions.assertThat;

import dev.moecluster.core.model.Architecture;
import dev.moecluster.core.model.ModelGenerator;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class TextStreamTest {
    @TempDir
    Path dir;

    private TextTokenizer tokenizer() throws Exception {
        ModelGenerator.generate(ModelGenerator.Spec.tiny(Architecture.QWEN3_MOE), dir);
        return TextTokenizer.load(dir);
    }

    /** Feeds the tokens of {@code text} one by one and returns everything streamed. */
    private static String stream(TextStream s, int[] ids) {
        StringBuilder out = new StringBuilder();
        for (int id : ids) {
            out.append(s.add(id));
            if (s.stopped()) {
                return out.toString();
            }
        }
        return out.append(s.finish()).toString();
    }

    @Test
    void deltasConcatenateToTheDecodedText() throws Exception {
        try (TextTokenizer t = tokenizer()) {
            String text = "The router runs attention and the gate; héllo wörld ✓";
            int[] ids = t.encode(text);
            assertThat(stream(new TextStream(t, List.of()), ids)).isEqualTo(t.decode(ids)).isEqualTo(text);
        }
    }

    @Test
    void stopsBeforeTheStopStringAndNeverStreamsIt() throws Exception {
        try (TextTokenizer t = tokenizer()) {
            int[] ids = t.encode("Once upon a time there was a little model");
            TextStream s = new TextStream(t, List.of("there", "nowhere"));
            StringBuilder seen = new StringBuilder();
            for (int id : ids) {
                String delta = s.add(id);
                seen.append(delta);
                assertThat(seen.toString()).doesNotContain("ther");
                if (s.stopped()) {
                    break;
                }
            }
            assertThat(s.stopped()).isTrue();
            assertThat(seen.toString()).isEqualTo("Once upon a time ");
        }
    }

    @Test
    void withoutATokenizerOnlyIdsAreProduced() {
        TextStream s = new TextStream(null, List.of("x"));
        assertThat(s.add(5)).isEmpty();
        assertThat(s.finish()).isEmpty();
        assertThat(s.stopped()).isFalse();
    }
}
