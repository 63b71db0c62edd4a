package dev.moecluster.router.generate;

import java.util.ArrayList;
import java.util.List;

/**
 * Turns a growing list of token ids into text deltas. Holds back what may still change: a trailing
 * incomplete UTF-8 character (decoded as U+FFFD) and any tail that could be the start of a stop
 * string, so no stop string is ever streamed.
 */
final class TextStream {
    private final TextTokenizer tokenizer;
    private final List<String> stops;
    private final int holdBack;
    private final List<Integer> ids = new ArrayList<>();
    private int emitted;
    private boolean stopped;

    TextStream(TextTokenizer tokenizer, List<String> stops) {
        this.tokenizer = tokenizer;
        this.stops = List.copyOf(stops);
        this.holdBack = stops.stream().mapToInt(String::length).max().orElse(1) - 1;
    }

    /** Adds a token; returns the text that is now final (possibly empty). */
    String add(int token) {
        ids.add(token);
        if (tokenizer == null) {
            return "";
        }
        String full = decode();
        int stop = firstStop(full);
        if (stop >= 0) {
            stopped = true;
            return take(full, stop);
        }
        int safe = full.length() - holdBack;
        while (safe > emitted && full.charAt(safe - 1) == '\uFFFD') {
            safe--;
        }
        return safe > emitted ? take(full, safe) : "";
    }

    /** True once a stop string appeared; the text before it has been returned. */
    boolean stopped() {
        return stopped;
    }

    /** The rest of the text at the end of generation. */
    String finish() {
        if (tokenizer == null || stopped) {
            return "";
        }
        String full = decode();
        return full.length() > emitted ? take(full, full.length()) : "";
    }

    private String take(String full, int end) {
        String delta = full.substring(emitted, end);
        emitted = end;
        return delta;
    }

    private int firstStop(String full) {
        int best = -1;
        for (String s : stops) {
            int i = full.indexOf(s, Math.max(0, emitted - s.length()));
            if (i >= 0 && (best < 0 || i < best)) {
                best = i;
            }
        }
        return best;
    }

    private String decode() {
        int[] a = new int[ids.size()];
        for (int i = 0; i < a.length; i++) {
            a[i] = ids.get(i);
        }
        return tokenizer.decode(a);
    }
}
