package dev.moecluster.control;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class BearerTokenTest {
    @TempDir
    Path dir;

    @Test
    void fileContentIsTrimmedAndMatchedExactly() throws Exception {
        BearerToken token = BearerToken.readFrom(Files.writeString(dir.resolve("token"), "  s3cret-token\n"));
        assertThat(token.matches("s3cret-token")).isTrue();
        assertThat(token.matches("s3cret-toke")).isFalse();
        assertThat(token.matches("s3cret-token2")).isFalse();
        assertThat(token.matches("S3cret-token")).isFalse();
        assertThat(token.matches(null)).isFalse();
        assertThat(token.toString()).doesNotContain("s3cret");
    }

    @Test
    void missingOrEmptyFileIsNamed() throws Exception {
        Path missing = dir.resolve("absent");
        assertThatThrownBy(() -> BearerToken.readFrom(missing)).hasMessage("token file " + missing + " does not exist");
        Path empty = Files.writeString(dir.resolve("empty"), " \n");
        assertThatThrownBy(() -> BearerToken.readFrom(empty)).hasMessage("token file " + empty + ": bearer token is empty");
        Path spaced = Files.writeString(dir.resolve("spaced"), "two words");
        assertThatThrownBy(() -> BearerToken.readFrom(spaced))
                .hasMessage("token file " + spaced + ": bearer token must be printable ASCII without spaces");
    }
}
