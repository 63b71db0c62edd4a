package dev.moecluster.control;

import static org.assertj.core.api.Assertions.assertThat;

import io.grpc.Status;
import org.junit.jupiter.api.Test;

class ErrorTextTest {
    @Test
    void shortTextIsKeptAndLongTextIsCutWithTheCountLeftOut() {
        assertThat(ErrorText.excerpt("llama-9000")).isEqualTo("llama-9000");
        assertThat(ErrorText.excerpt("x".repeat(ErrorText.MAX_EXCERPT_LENGTH))).hasSize(ErrorText.MAX_EXCERPT_LENGTH);
        assertThat(ErrorText.excerpt("y".repeat(1000))).isEqualTo("y".repeat(80) + "… (920 more characters)");
    }

    @Test
    void neverCutsACharacterInHalf() {
        String text = "a".repeat(ErrorText.MAX_EXCERPT_LENGTH - 1) + "😀" + "b".repeat(10); // the emoji straddles the cut
        assertThat(ErrorText.excerpt(text)).isEqualTo("a".repeat(79) + "… (12 more characters)");
    }

    @Test
    void boundsStatusDescriptionsAndKeepsTheCode() {
        Status s = ErrorText.bounded(Status.NOT_FOUND.withDescription("z".repeat(5000)));
        assertThat(s.getCode()).isEqualTo(Status.Code.NOT_FOUND);
        assertThat(s.getDescription()).startsWith("z".repeat(ErrorText.MAX_STATUS_LENGTH) + "… (3976 more characters)");
        Status plain = Status.UNAVAILABLE;
        assertThat(ErrorText.bounded(plain)).isSameAs(plain);
    }
}
