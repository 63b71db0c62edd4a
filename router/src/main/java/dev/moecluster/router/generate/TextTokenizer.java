package dev.moecluster.router.generate;

import ai.djl.huggingface.tokenizers.HuggingFaceTokenizer;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;

/**
 * The model's Hugging Face {@code tokenizer.json}, through the tokenizers library's native code.
 * Encoding adds the special tokens the tokenizer's post-processor defines (BOS for Llama and
 * Mixtral, none for Qwen). Nothing is truncated: a text encodes to all its tokens.
 */
public final class TextTokenizer implements AutoCloseable {
    static {
        // The tokenizer runs on the CPU. On a machine with a GPU, DJL would otherwise look for a CUDA
        // build of its native library, which its jar does not carry, and try to download one (found on
        // an H200: "Failed to load Huggingface native library"). Either may still be set from outside.
        if (System.getenv("RUST_FLAVOR") == null && System.getProperty("RUST_FLAVOR") == null) {
            System.setProperty("RUST_FLAVOR", "cpu");
        }
        if (System.getenv("DJL_OFFLINE") == null && System.getProperty("ai.djl.offline") == null) {
            System.setProperty("ai.djl.offline", "true");
        }
    }

    private final HuggingFaceTokenizer tokenizer;

    private TextTokenizer(HuggingFaceTokenizer tokenizer) {
        this.tokenizer = tokenizer;
    }

    public static TextTokenizer load(Path modelDir) throws IOException {
        Path file = modelDir.resolve("tokenizer.json");
        if (!Files.exists(file)) {
            throw new IOException("no tokenizer.json in " + modelDir + "; send token ids instead of text");
        }
        // DJL truncates to 512 tokens unless told otherwise; the scheduler checks the length against the context
        return new TextTokenizer(HuggingFaceTokenizer.newInstance(file, Map.of("addSpecialTokens", "true", "truncation", "false")));
    }

    public int[] encode(String text) {
        return encode(text, true);
    }

    /**
     * Encodes text, adding the special tokens of the post-processor or not: a prompt rendered from a
     * chat template already carries them (as transformers' and vLLM's chat paths, which encode without).
     */
    public int[] encode(String text, boolean addSpecialTokens) {
        long[] ids = tokenizer.encode(text, addSpecialTokens, false).getIds();
        int[] out = new int[ids.length];
        for (int i = 0; i < ids.length; i++) {
            out[i] = Math.toIntExact(ids[i]);
        }
        return out;
    }

    /** Decodes ids to text, leaving out special tokens. */
    public String decode(int[] ids) {
        long[] l = new long[ids.length];
        for (int i = 0; i < ids.length; i++) {
            l[i] = ids[i];
        }
        return tokenizer.decode(l, true);
    }

    /** One token's text, special tokens included (for log-probability listings). */
    public String tokenText(int id) {
        return tokenizer.decode(new long[] {id}, false);
    }

    @Override
    public void close() {
        tokenizer.close();
    }
}
