package dev.moecluster.coordinator;

import java.math.BigDecimal;
import java.math.RoundingMode;
import java.util.Locale;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * An amount of memory in bytes, written the way operators write it: binary units ({@code KiB},
 * {@code MiB}, {@code GiB}, {@code TiB}, powers of 1024) or decimal units ({@code KB}, {@code MB},
 * {@code GB}, {@code TB}, powers of 1000, as GPU vendors print them). A bare number or a bare
 * {@code G} is refused because it does not say which.
 */
public record MemorySize(long bytes) {
    private static final Pattern SYNTAX = Pattern.compile("\\s*([0-9]+(?:\\.[0-9]+)?)\\s*([A-Za-z]*)\\s*");
    private static final String[] BINARY = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};

    public MemorySize {
        if (bytes < 0) {
            throw new IllegalArgumentException("memory size must not be negative, got " + bytes);
        }
    }

    /**
     * Parses {@code 80GiB}, {@code 80GB}, {@code 141 GiB}, {@code 512MiB}, {@code 1.5TiB} or
     * {@code 4096B}; units are case-insensitive, fractions of a byte are dropped.
     *
     * @throws IllegalArgumentException for a missing, unknown or ambiguous unit, or a size that
     *     does not fit a {@code long}
     */
    public static MemorySize parse(String text) {
        Matcher m = SYNTAX.matcher(text == null ? "" : text);
        if (!m.matches()) {
            throw new IllegalArgumentException("cannot read memory size '" + text
                    + "': write a number and a unit, e.g. 80GiB (binary) or 80GB (decimal)");
        }
        long unit = unitBytes(m.group(2), text);
        BigDecimal bytes = new BigDecimal(m.group(1)).multiply(BigDecimal.valueOf(unit)).setScale(0, RoundingMode.DOWN);
        try {
            return new MemorySize(bytes.longValueExact());
        } catch (ArithmeticException e) {
            throw new IllegalArgumentException("memory size '" + text + "' is too large", e);
        }
    }

    private static long unitBytes(String unit, String text) {
        return switch (unit.toLowerCase(Locale.ROOT)) {
            case "b" -> 1L;
            case "kib" -> 1L << 10;
            case "mib" -> 1L << 20;
            case "gib" -> 1L << 30;
            case "tib" -> 1L << 40;
            case "kb" -> 1_000L;
            case "mb" -> 1_000_000L;
            case "gb" -> 1_000_000_000L;
            case "tb" -> 1_000_000_000_000L;
            case "" -> throw new IllegalArgumentException("memory size '" + text
                    + "' has no unit: write e.g. 80GiB (80 x 2^30 bytes) or 80GB (80 x 10^9 bytes)");
            case "k", "m", "g", "t", "ki", "mi", "gi", "ti" -> throw new IllegalArgumentException("memory size '" + text
                    + "' is ambiguous: write " + unit.charAt(0) + "iB for powers of 1024 or " + unit.charAt(0)
                    + "B for powers of 1000");
            default -> throw new IllegalArgumentException("unknown unit '" + unit + "' in memory size '" + text
                    + "' (use B, KiB, MiB, GiB, TiB or KB, MB, GB, TB)");
        };
    }

    /** Formats a byte count in the largest binary unit below it, e.g. {@code 72.0 GiB}, {@code 240.0 MiB}. */
    public static String format(long bytes) {
        if (bytes < 1024) {
            return bytes + " B";
        }
        int u = 0;
        double v = bytes;
        while (v >= 1024 && u < BINARY.length - 1) {
            v /= 1024;
            u++;
        }
        return String.format(Locale.ROOT, "%.1f %s", v, BINARY[u]);
    }

    /** The same size in decimal gigabytes, e.g. {@code 85.90 GB} for 80 GiB. */
    public static String formatDecimalGb(long bytes) {
        return String.format(Locale.ROOT, "%.2f GB", bytes / 1e9);
    }

    @Override
    public String toString() {
        return format(bytes);
    }
}
