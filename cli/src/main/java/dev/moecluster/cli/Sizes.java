package dev.moecluster.cli;

import java.util.Locale;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/** Parses memory sizes as operators write them: {@code 80GiB} (binary), {@code 80GB} (decimal), {@code 512MiB}, bytes. */
final class Sizes {
    private static final Pattern SIZE = Pattern.compile("\\s*([0-9]+(?:\\.[0-9]+)?)\\s*([KMGT]i?B|B)?\\s*", Pattern.CASE_INSENSITIVE);

    private Sizes() {}

    static long parseBytes(String text) {
        Matcher m = SIZE.matcher(text);
        if (!m.matches()) {
            throw new IllegalArgumentException("bad size '" + text + "' (use e.g. 80GiB, 80GB, 512MiB)");
        }
        double value = Double.parseDouble(m.group(1));
        String unit = m.group(2) == null ? "B" : m.group(2).toUpperCase(Locale.ROOT);
        double factor = switch (unit) {
            case "B" -> 1;
            case "KB" -> 1e3;
            case "MB" -> 1e6;
            case "GB" -> 1e9;
            case "TB" -> 1e12;
            case "KIB" -> 1L << 10;
            case "MIB" -> 1L << 20;
            case "GIB" -> 1L << 30;
            case "TIB" -> 1L << 40;
            default -> throw new IllegalArgumentException("bad size unit in '" + text + "'");
        };
        return (long) (value * factor);
    }
}
