package dev.moecluster.control;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.grpc.CallCredentials;
import io.grpc.Metadata;
import io.grpc.Status;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.FileTime;
import java.time.Duration;
import java.util.concurrent.atomic.AtomicReference;
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

    @Test
    void everyLineIsAcceptedAndRotationsArePickedUp() throws Exception {
        Path file = Files.writeString(dir.resolve("token"), "old-token\n\n  new-token  \n");
        BearerToken token = BearerToken.readFrom(file, Duration.ZERO);
        assertThat(token.matches("old-token")).isTrue();
        assertThat(token.matches("new-token")).isTrue();
        assertThat(token.matches("old-tokennew-token")).isFalse();
        assertThat(sent(token)).as("clients send the first line").isEqualTo("Bearer old-token");

        // the rotation finishes: only the new token is left; a half-written file changes nothing
        rewrite(file, "");
        assertThat(token.matches("old-token")).isTrue();
        rewrite(file, "new-token\n");
        assertThat(token.matches("old-token")).isFalse();
        assertThat(token.matches("new-token")).isTrue();
        assertThat(sent(token)).isEqualTo("Bearer new-token");
    }

    @Test
    void aTokenGivenDirectlyNeverChanges() {
        BearerToken token = BearerToken.of(" direct ");
        assertThat(token.matches("direct")).isTrue();
        assertThatThrownBy(() -> BearerToken.of("a\nb c")).hasMessage("bearer token must be printable ASCII without spaces");
    }

    private static void rewrite(Path file, String content) throws Exception {
        FileTime before = Files.getLastModifiedTime(file);
        Files.writeString(file, content);
        Files.setLastModifiedTime(file, FileTime.from(before.toInstant().plusSeconds(1)));
    }

    /** The authorization header the client side attaches. */
    private static String sent(BearerToken token) {
        AtomicReference<Metadata> applied = new AtomicReference<>();
        token.callCredentials().applyRequestMetadata(null, Runnable::run, new CallCredentials.MetadataApplier() {
            @Override
            public void apply(Metadata headers) {
                applied.set(headers);
            }

            @Override
            public void fail(Status status) {
                throw new AssertionError(status.toString());
            }
        });
        return applied.get().get(BearerToken.AUTHORIZATION);
    }
}
