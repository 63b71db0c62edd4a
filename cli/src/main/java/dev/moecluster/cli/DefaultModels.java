package dev.moecluster.cli;

import dev.moecluster.core.model.Architecture;
import dev.moecluster.core.model.ModelGenerator;
import dev.moecluster.core.tensor.DType;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * The built-in models {@code moe local} and {@code moe demo} use when no {@code --model} is given:
 * small generated checkpoints of each architecture, written once under the user's cache directory
 * ({@code $XDG_CACHE_HOME/moe-cluster/models}, {@code ~/.cache/...}, or {@code -Dmoe.cache.dir}).
 */
final class DefaultModels {
    /** Bump when the generated content changes so stale caches are not reused. */
    private static final int VERSION = 2;

    private DefaultModels() {}

    static ModelGenerator.Spec spec(Architecture arch) {
        return new ModelGenerator.Spec(arch, 2, 256, 512, 8, 0, 7, DType.BF16, 1);
    }

    /** The directory of the built-in model of {@code arch}, generated on first use. */
    static Path path(Architecture arch) throws IOException {
        Path root = cacheRoot().resolve("tiny-" + arch.cliName() + "-v" + VERSION);
        if (!Files.exists(root.resolve("config.json"))) {
            Path tmp = Files.createDirectories(root.getParent()).resolve(root.getFileName() + ".tmp-" + ProcessHandle.current().pid());
            ModelGenerator.generate(spec(arch), tmp);
            try {
                Files.move(tmp, root);
            } catch (IOException e) {
                if (!Files.exists(root.resolve("config.json"))) {
                    throw e;
                }
            }
        }
        return root;
    }

    private static Path cacheRoot() {
        String override = System.getProperty("moe.cache.dir");
        if (override != null && !override.isBlank()) {
            return Path.of(override);
        }
        String xdg = System.getenv("XDG_CACHE_HOME");
        Path base = xdg != null && !xdg.isBlank() ? Path.of(xdg) : Path.of(System.getProperty("user.home"), ".cache");
        return base.resolve("moe-cluster").resolve("models");
    }
}
