package dev.moecluster.core.model;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Hub ids resolved offline in a directory laid out as huggingface_hub's cache. */
class ModelLocationTest {
    private static final String MAIN = "0123456789abcdef0123456789abcdef01234567";
    private static final String OLD = "fedcba9876543210fedcba9876543210fedcba98";

    /** models--acme--tiny-moe with two snapshots, refs/main at MAIN and refs/v1 at OLD; the model is real. */
    private static Path cache(Path root) throws IOException {
        Path repo = root.resolve("models--acme--tiny-moe");
        ModelGenerator.generate(ModelGenerator.Spec.tiny(Architecture.MIXTRAL), repo.resolve("snapshots").resolve(MAIN));
        Files.createDirectories(repo.resolve("snapshots").resolve(OLD));
        Files.copy(repo.resolve("snapshots").resolve(MAIN).resolve("config.json"), repo.resolve("snapshots").resolve(OLD).resolve("config.json"));
        Files.createDirectories(repo.resolve("refs"));
        Files.writeString(repo.resolve("refs").resolve("main"), MAIN); // huggingface_hub writes no newline
        Files.writeString(repo.resolve("refs").resolve("v1"), OLD + "\n");
        Files.createDirectories(repo.resolve("blobs"));
        return root;
    }

    @Test
    void hubIdsFollowRefsToTheirSnapshotAndAreTheModelsName(@TempDir Path tmp) throws IOException {
        Path hub = cache(tmp.resolve("hub"));
        Path main = ModelLocation.resolve("acme/tiny-moe", hub);
        assertThat(main).isEqualTo(hub.resolve("models--acme--tiny-moe/snapshots/" + MAIN));
        assertThat(ModelLocation.resolve("acme/tiny-moe@main", hub)).isEqualTo(main);
        assertThat(ModelLocation.resolve("acme/tiny-moe@v1", hub)).isEqualTo(hub.resolve("models--acme--tiny-moe/snapshots/" + OLD));
        assertThat(ModelLocation.resolve("acme/tiny-moe@" + OLD, hub)).isEqualTo(hub.resolve("models--acme--tiny-moe/snapshots/" + OLD));
        // served under its hub id, as vLLM names it
        ModelConfig config = ModelConfig.load(main);
        assertThat(config.name()).isEqualTo("acme/tiny-moe");
        assertThat(config.architecture()).isEqualTo(Architecture.MIXTRAL);
    }

    @Test
    void aDirectoryIsTakenAsItIs(@TempDir Path tmp) throws IOException {
        Path dir = tmp.resolve("my-model");
        ModelGenerator.generate(ModelGenerator.Spec.tiny(Architecture.QWEN3_MOE), dir);
        assertThat(ModelLocation.resolve(dir.toString(), tmp.resolve("no-cache"))).isEqualTo(dir);
        assertThat(ModelConfig.load(dir).name()).isEqualTo("my-model");
    }

    @Test
    void withoutRefsMainTheOnlySnapshotIsTheModel(@TempDir Path tmp) throws IOException {
        Path hub = cache(tmp.resolve("hub"));
        Path repo = hub.resolve("models--acme--tiny-moe");
        Files.delete(repo.resolve("refs/main"));
        assertThatThrownBy(() -> ModelLocation.resolve("acme/tiny-moe", hub))
                .hasMessageContaining("refs/main (none)")
                .hasMessageContaining("2 snapshots")
                .hasMessageContaining("name one with @COMMIT");
        deleteTree(repo.resolve("snapshots").resolve(OLD));
        assertThat(ModelLocation.resolve("acme/tiny-moe", hub)).isEqualTo(repo.resolve("snapshots").resolve(MAIN));
    }

    @Test
    void whatWasLookedForIsInTheError(@TempDir Path tmp) throws IOException {
        Path hub = cache(tmp.resolve("hub"));
        assertThatThrownBy(() -> ModelLocation.resolve("acme/other", hub))
                .isInstanceOf(IOException.class)
                .hasMessageContaining("--model acme/other was not found offline")
                .hasMessageContaining(hub.resolve("models--acme--other") + " (none)")
                .hasMessageContaining("huggingface-cli download acme/other");
        assertThatThrownBy(() -> ModelLocation.resolve("acme/tiny-moe@v2", hub))
                .hasMessageContaining(hub.resolve("models--acme--tiny-moe/refs/v2") + " (none)");
        assertThatThrownBy(() -> ModelLocation.resolve("acme/tiny-moe@" + "1".repeat(40), hub))
                .hasMessageContaining("snapshots/" + "1".repeat(40) + " (none)");
        Files.delete(hub.resolve("models--acme--tiny-moe/snapshots/" + OLD + "/config.json"));
        assertThatThrownBy(() -> ModelLocation.resolve("acme/tiny-moe@v1", hub)).hasMessageContaining("has no config.json");
        assertThatThrownBy(() -> ModelLocation.resolve("not a model", hub)).hasMessageContaining("not a hub id");
    }

    @Test
    void cacheRootFollowsHuggingFaceHubsEnvironment() {
        assertThat(ModelLocation.hubCache(Map.of("HF_HUB_CACHE", "/a", "HF_HOME", "/b"))).isEqualTo(Path.of("/a"));
        assertThat(ModelLocation.hubCache(Map.of("HF_HOME", "/b", "XDG_CACHE_HOME", "/c"))).isEqualTo(Path.of("/b/hub"));
        assertThat(ModelLocation.hubCache(Map.of("XDG_CACHE_HOME", "/c"))).isEqualTo(Path.of("/c/huggingface/hub"));
        assertThat(ModelLocation.hubCache(Map.of()))
                .isEqualTo(Path.of(System.getProperty("user.home"), ".cache", "huggingface", "hub"));
    }

    private static void deleteTree(Path dir) throws IOException {
        try (var paths = Files.walk(dir)) {
            for (Path p : paths.sorted(java.util.Comparator.reverseOrder()).toList()) {
                Files.delete(p);
            }
        }
    }
}
