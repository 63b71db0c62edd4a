package dev.moecluster.core.model;

import com.google.gson.JsonArray;
import com.google.gson.JsonNull;
import com.google.gson.JsonObject;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * A small byte-level BPE vocabulary (the GPT-2 scheme Llama 3/4, Qwen and others use), learned from
 * a built-in English text, written as a Hugging Face {@code tokenizer.json}. Generated models use it
 * so they can be served end to end without downloading a tokenizer.
 */
final class ByteLevelBpe {
    private static final int MERGES = 256;
    private static final Pattern PRETOKENIZE =
            Pattern.compile(" ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+");
    private static final String CORPUS = """
            The quick brown fox jumps over the lazy dog. A mixture of experts model routes every token to a few
            experts chosen by a gate, so the model can be large while each token pays for only a small part of it.
            The router runs attention and the gate; the experts live on workers across the cluster, and the
            coordinator places them, replicates the hot ones and moves them when the load changes. Hello world!
            Once upon a time there was a little model that wanted to serve many people at the same time. It learned
            to batch their requests together, to keep its memory in order, and to answer quickly and correctly.
            In the beginning the numbers were small: one, two, three, four, five, six, seven, eight, nine, ten.
            """;

    private final Map<String, Integer> vocab;
    private final List<String> merges;
    private final List<String> specials;

    private ByteLevelBpe(Map<String, Integer> vocab, List<String> merges, List<String> specials) {
        this.vocab = vocab;
        this.merges = merges;
        this.specials = specials;
    }

    static ByteLevelBpe train(List<String> specials) {
        char[] byteToChar = byteToUnicode();
        Map<String, Integer> vocab = new LinkedHashMap<>();
        for (int b = 0; b < 256; b++) {
            vocab.put(String.valueOf(byteToChar[b]), b);
        }
        Map<List<String>, Integer> words = new HashMap<>();
        Matcher m = PRETOKENIZE.matcher(CORPUS.replace('\n', ' '));
        while (m.find()) {
            List<String> symbols = new ArrayList<>();
            for (byte b : m.group().getBytes(StandardCharsets.UTF_8)) {
                symbols.add(String.valueOf(byteToChar[b & 0xff]));
            }
            words.merge(symbols, 1, Integer::sum);
        }
        List<String> merges = new ArrayList<>();
        for (int i = 0; i < MERGES; i++) {
            Map<String, Integer> pairs = new HashMap<>();
            for (var w : words.entrySet()) {
                List<String> s = w.getKey();
                for (int j = 0; j + 1 < s.size(); j++) {
                    pairs.merge(s.get(j) + " " + s.get(j + 1), w.getValue(), Integer::sum);
                }
            }
            String best = null;
            int bestCount = 1;
            for (var p : pairs.entrySet()) {
                if (p.getValue() > bestCount || (p.getValue() == bestCount && best != null && p.getKey().compareTo(best) < 0)) {
                    best = p.getKey();
                    bestCount = p.getValue();
                }
            }
            if (best == null) {
                break;
            }
            merges.add(best);
            String[] parts = best.split(" ");
            String merged = parts[0] + parts[1];
            vocab.putIfAbsent(merged, vocab.size());
            Map<List<String>, Integer> next = new HashMap<>();
            for (var w : words.entrySet()) {
                List<String> s = w.getKey();
                List<String> out = new ArrayList<>();
                for (int j = 0; j < s.size(); j++) {
                    if (j + 1 < s.size() && s.get(j).equals(parts[0]) && s.get(j + 1).equals(parts[1])) {
                        out.add(merged);
                        j++;
                    } else {
                        out.add(s.get(j));
                    }
                }
                next.merge(out, w.getValue(), Integer::sum);
            }
            words = next;
        }
        for (String s : specials) {
            vocab.put(s, vocab.size());
        }
        return new ByteLevelBpe(vocab, merges, specials);
    }

    int vocabSize() {
        return vocab.size();
    }

    int idOf(String token) {
        Integer id = vocab.get(token);
        if (id == null) {
            throw new IllegalArgumentException("no token " + token);
        }
        return id;
    }

    /** The GPT-2 mapping of bytes to printable characters. */
    static char[] byteToUnicode() {
        char[] map = new char[256];
        boolean[] direct = new boolean[256];
        for (int b = '!'; b <= '~'; b++) {
            direct[b] = true;
        }
        for (int b = 0xA1; b <= 0xAC; b++) {
            direct[b] = true;
        }
        for (int b = 0xAE; b <= 0xFF; b++) {
            direct[b] = true;
        }
        int n = 0;
        for (int b = 0; b < 256; b++) {
            map[b] = direct[b] ? (char) b : (char) (256 + n++);
        }
        return map;
    }

    JsonObject toTokenizerJson(boolean addBos) {
        JsonObject root = new JsonObject();
        root.addProperty("version", "1.0");
        root.add("truncation", JsonNull.INSTANCE);
        root.add("padding", JsonNull.INSTANCE);
        JsonArray added = new JsonArray();
        for (String s : specials) {
            JsonObject t = new JsonObject();
            t.addProperty("id", vocab.get(s));
            t.addProperty("content", s);
            t.addProperty("single_word", false);
            t.addProperty("lstrip", false);
            t.addProperty("rstrip", false);
            t.addProperty("normalized", false);
            t.addProperty("special", true);
            added.add(t);
        }
        root.add("added_tokens", added);
        root.add("normalizer", JsonNull.INSTANCE);
        root.add("pre_tokenizer", byteLevel(false));
        if (addBos) {
            String bos = specials.getFirst();
            JsonObject post = new JsonObject();
            post.addProperty("type", "TemplateProcessing");
            post.add("single", template(bos, "A"));
            JsonArray pair = template(bos, "A");
            pair.addAll(template(bos, "B"));
            post.add("pair", pair);
            JsonObject st = new JsonObject();
            JsonObject entry = new JsonObject();
            entry.addProperty("id", bos);
            JsonArray ids = new JsonArray();
            ids.add(vocab.get(bos));
            entry.add("ids", ids);
            JsonArray toks = new JsonArray();
            toks.add(bos);
            entry.add("tokens", toks);
            st.add(bos, entry);
            post.add("special_tokens", st);
            root.add("post_processor", post);
        } else {
            root.add("post_processor", byteLevel(false));
        }
        root.add("decoder", byteLevel(true));
        JsonObject model = new JsonObject();
        model.addProperty("type", "BPE");
        model.add("dropout", JsonNull.INSTANCE);
        model.add("unk_token", JsonNull.INSTANCE);
        model.add("continuing_subword_prefix", JsonNull.INSTANCE);
        model.add("end_of_word_suffix", JsonNull.INSTANCE);
        model.addProperty("fuse_unk", false);
        model.addProperty("byte_fallback", false);
        model.addProperty("ignore_merges", false);
        JsonObject v = new JsonObject();
        vocab.forEach((tok, id) -> {
            if (!specials.contains(tok)) {
                v.addProperty(tok, id);
            }
        });
        model.add("vocab", v);
        JsonArray mergeArray = new JsonArray();
        merges.forEach(mergeArray::add);
        model.add("merges", mergeArray);
        root.add("model", model);
        return root;
    }

    private static JsonObject byteLevel(boolean addPrefixSpace) {
        JsonObject o = new JsonObject();
        o.addProperty("type", "ByteLevel");
        o.addProperty("add_prefix_space", addPrefixSpace);
        o.addProperty("trim_offsets", true);
        o.addProperty("use_regex", true);
        return o;
    }

    private static JsonArray template(String bos, String sequence) {
        JsonArray a = new JsonArray();
        JsonObject special = new JsonObject();
        JsonObject sp = new JsonObject();
        sp.addProperty("id", bos);
        sp.addProperty("type_id", 0);
        special.add("SpecialToken", sp);
        a.add(special);
        JsonObject seq = new JsonObject();
        JsonObject sq = new JsonObject();
        sq.addProperty("id", sequence);
        sq.addProperty("type_id", 0);
        seq.add("Sequence", sq);
        a.add(seq);
        return a;
    }
}
