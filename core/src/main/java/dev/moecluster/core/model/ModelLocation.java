package dev.moecluster.core.model;

import static java.util.Objects.requireNonNull;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;

/**
 * Where a {@code --model} lives: a model directory, or a Hugging Face hub id {@code org/name[@revision]}
 * found offline in the local hub cache as {@code huggingface_hub} lays it out
 * ({@code models--org--name/refs/<revision>} naming a commit, {@code snapshots/<commit>/} holding the
 * files). Nothing is downloaded.
 */
public final class ModelLocation {
    private static final Pattern HUB_ID = Pattern.compile("([A-Za-z0-9][A-Za-z0-9._-]*)/([A-Za-z0-9][A-Za-z0-9._-]*)(?:@(.+))?");
    private static final Pattern COMMIT = Pattern.compile("[0-9a-f]{40}");
    private static final String DEFAULT_REVISION = "main";

    private ModelLocation() {}

    /**
     * The model directory {@code spec} names: an existing directory as it is, else a hub id looked up in
     * {@link #hubCache(Map)} of this process's environment.
     *
     * @throws IOException saying what was looked for when neither finds it
     */
    public static Path resolve(String spec) throws IOException {
        return resolve(spec, hubCache(System.getenv()));
    }

    /** As {@link #resolve(String)}, with the hub cache given. */
    public static Path resolve(String spec, Path hubCache) throws IOException {
        requireNonNull(spec, "spec is null");
        Path asDir = Path.of(spec);
        if (Files.isDirectory(asDir)) {
            return asDir;
        }
        Matcher m = HUB_ID.matcher(spec);
        if (!m.matches()) {
            throw new IOException("--model " + spec + ": no such directory, and not a hub id (org/name or org/name@revision)");
        }
        String org = m.group(1);
        String name = m.group(2);
        String revision = m.group(3) == null ? DEFAULT_REVISION : m.group(3);
        Path repo = hubCache.resolve("models--" + org + "--" + name);
        List<String> lookedFor = new ArrayList<>();
        lookedFor.add("directory " + asDir.toAbsolutePath() + " (none)");
        if (!Files.isDirectory(repo)) {
            lookedFor.add(repo + " (none)");
            throw notFound(spec, lookedFor, org + "/" + name);
        }
        Path snapshots = repo.resolve("snapshots");
        Path snapshot = null;
        Path ref = repo.resolve("refs").resolve(revision);
        if (COMMIT.matcher(revision).matches()) {
            snapshot = snapshots.resolve(revision);
            lookedFor.add(snapshot + (Files.isDirectory(snapshot) ? "" : " (none)"));
        } else if (Files.isRegularFile(ref)) {
            String commit = Files.readString(ref).strip();
            snapshot = snapshots.resolve(commit);
            lookedFor.add(ref + " -> " + commit + ", " + snapshot + (Files.isDirectory(snapshot) ? "" : " (none)"));
        } else {
            lookedFor.add(ref + " (none)");
            List<Path> all = snapshots(snapshots);
            if (m.group(3) == null && all.size() == 1) {
                // downloaded by commit, so there is no refs/main: the one snapshot there is is the model
                snapshot = all.getFirst();
            } else {
                lookedFor.add(snapshots + ": " + (all.isEmpty() ? "no snapshots"
                        : all.size() + " snapshots " + all.stream().map(p -> p.getFileName().toString()).toList()
                                + "; name one with @COMMIT"));
            }
        }
        if (snapshot == null || !Files.isDirectory(snapshot)) {
            throw notFound(spec, lookedFor, org + "/" + name + (m.group(3) == null ? "" : " --revision " + revision));
        }
        if (!Files.exists(snapshot.resolve("config.json"))) {
            throw new IOException("--model " + spec + " resolved to " + snapshot + ", which has no config.json"
                    + " (a partial download? files there: " + fileNames(snapshot) + ")");
        }
        return snapshot;
    }

    private static IOException notFound(String spec, List<String> lookedFor, String download) {
        return new IOException("--model " + spec + " was not found offline; looked for:\n  " + String.join("\n  ", lookedFor)
                + "\nDownload it first (huggingface-cli download " + download + "), set HF_HUB_CACHE or HF_HOME to the"
                + " cache that has it, or give --model a model directory.");
    }

    private static List<Path> snapshots(Path dir) throws IOException {
        if (!Files.isDirectory(dir)) {
            return List.of();
        }
        try (Stream<Path> s = Files.list(dir)) {
            return s.filter(Files::isDirectory).sorted().toList();
        }
    }

    private static List<String> fileNames(Path dir) throws IOException {
        try (Stream<Path> s = Files.list(dir)) {
            return s.map(p -> p.getFileName().toString()).sorted().toList();
        }
    }

    /**
     * The hub cache huggingface_hub uses with this environment: {@code HF_HUB_CACHE} (or the older
     * {@code HUGGINGFACE_HUB_CACHE}), else {@code $HF_HOME/hub}, else {@code $XDG_CACHE_HOME/huggingface/hub},
     * else {@code ~/.cache/huggingface/hub}.
     */
    public static Path hubCache(Map<String, String> env) {
        for (String var : List.of("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE")) {
            if (present(env.get(var))) {
                return Path.of(env.get(var));
            }
        }
        if (present(env.get("HF_HOME"))) {
            return Path.of(env.get("HF_HOME"), "hub");
        }
        if (present(env.get("XDG_CACHE_HOME"))) {
            return Path.of(env.get("XDG_CACHE_HOME"), "huggingface", "hub");
        }
        return Path.of(System.getProperty("user.home"), ".cache", "huggingface", "hub");
    }

    private static boolean present(String s) {
        return s != null && !s.isBlank();
    }

    /**
     * The model's name: the hub id ({@code org/name}) for a snapshot in a hub cache, as vLLM names a model
     * served from the hub, else the directory's name.
     */
    public static String nameOf(Path modelDir) {
        Path abs = modelDir.toAbsolutePath().normalize();
        Path parent = abs.getParent();
        Path repo = parent == null ? null : parent.getParent();
        if (parent != null && repo != null && parent.getFileName() != null && parent.getFileName().toString().equals("snapshots")
                && repo.getFileName() != null) {
            String repoName = repo.getFileName().toString();
            if (repoName.startsWith("models--")) {
                String[] parts = repoName.substring("models--".length()).split("--", 2);
                if (parts.length == 2) {
                    return parts[0] + "/" + parts[1];
                }
            }
        }
        return abs.getFileName() == null ? "model" : abs.getFileName().toString();
    }
}
