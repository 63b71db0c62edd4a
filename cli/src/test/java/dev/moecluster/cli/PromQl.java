package dev.moecluster.cli;

import static org.assertj.core.api.Assertions.assertThat;

import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.Map;
import java.util.Set;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Just enough of PromQL's lexical structure to find the series an expression reads: strings, label
 * matchers, ranges and grouping clauses are cut out; an identifier left over is a function when a
 * parenthesis follows it, a keyword from a short list, or else a series name. Shared by the tests that hold
 * PromQL (the Grafana dashboard, the alerting rules) against a running cluster's exposition.
 */
final class PromQl {
    private static final Pattern STRING = Pattern.compile("\"(?:[^\"\\\\]|\\\\.)*\"|'(?:[^'\\\\]|\\\\.)*'|`[^`]*`");
    private static final Pattern MATCHERS = Pattern.compile("\\{[^}]*}");
    private static final Pattern RANGE = Pattern.compile("\\[[^]]*]");
    private static final Pattern GROUPING = Pattern.compile(
            "\\b(?:by|without|on|ignoring|group_left|group_right)\\s*\\(([^)]*)\\)");
    private static final Pattern BARE_GROUP_MODIFIER = Pattern.compile("\\b(?:group_left|group_right)\\b");
    private static final Pattern VARIABLE = Pattern.compile("\\$\\{?\\w+}?");
    private static final Pattern IDENTIFIER = Pattern.compile("(?<![\\w.:])([a-zA-Z_:][a-zA-Z0-9_:]*)(\\s*\\()?");
    private static final Pattern SELECTOR = Pattern.compile("([a-zA-Z_:][a-zA-Z0-9_:]*)\\s*\\{([^}]*)}");
    private static final Pattern MATCHER = Pattern.compile("([a-zA-Z_]\\w*)\\s*(?:=~|!~|!=|=)\\s*$");
    private static final Set<String> KEYWORDS = Set.of("and", "or", "unless", "bool", "offset", "inf", "nan", "start",
            "end");
    private static final Set<String> FUNCTIONS = Set.of("abs", "absent", "absent_over_time", "avg", "avg_over_time",
            "bottomk", "ceil", "changes", "clamp", "clamp_max", "clamp_min", "count", "count_over_time", "count_values",
            "delta", "deriv", "exp", "floor", "group", "histogram_quantile", "idelta", "increase", "irate", "label_join",
            "label_replace", "last_over_time", "ln", "log2", "log10", "max", "max_over_time", "min", "min_over_time",
            "predict_linear", "quantile", "quantile_over_time", "rate", "resets", "round", "scalar", "sort",
            "sort_desc", "sqrt", "stddev", "stddev_over_time", "stdvar", "sum", "sum_over_time", "time", "timestamp",
            "topk", "vector");

    private PromQl() {}

    /** The series names {@code expr} reads, in order of appearance; fails on a function PromQL does not have. */
    static Set<String> seriesNames(String expr) {
        String s = STRING.matcher(expr).replaceAll("\"\"");
        s = MATCHERS.matcher(s).replaceAll("{}");
        s = RANGE.matcher(s).replaceAll("[]");
        s = GROUPING.matcher(s).replaceAll(" ");
        s = BARE_GROUP_MODIFIER.matcher(s).replaceAll(" ");
        s = VARIABLE.matcher(s).replaceAll(" ");
        Set<String> names = new LinkedHashSet<>();
        Matcher m = IDENTIFIER.matcher(s);
        while (m.find()) {
            String id = m.group(1);
            if (KEYWORDS.contains(id)) {
                continue; // also before a parenthesis: "a or (b - 1)"
            }
            if (m.group(2) != null) {
                assertThat(FUNCTIONS).as("function %s in %s", id, expr).contains(id);
            } else {
                names.add(id);
            }
        }
        return names;
    }

    /** Label names used in each selector's matchers, by series name. */
    static Map<String, Set<String>> matcherLabels(String expr) {
        Map<String, Set<String>> out = new LinkedHashMap<>();
        Matcher m = SELECTOR.matcher(STRING.matcher(expr).replaceAll("\"\""));
        while (m.find()) {
            Set<String> labels = out.computeIfAbsent(m.group(1), k -> new LinkedHashSet<>());
            for (String part : m.group(2).split("\"\"")) {
                Matcher l = MATCHER.matcher(part.replaceFirst("^\\s*,", ""));
                if (l.find()) {
                    labels.add(l.group(1));
                }
            }
        }
        return out;
    }

    /** Label names in by, without, on, ignoring and group_left/right clauses. */
    static Set<String> groupingLabels(String expr) {
        Set<String> out = new LinkedHashSet<>();
        Matcher m = GROUPING.matcher(STRING.matcher(expr).replaceAll("\"\""));
        while (m.find()) {
            for (String label : m.group(1).split(",")) {
                if (!label.isBlank()) {
                    out.add(label.strip());
                }
            }
        }
        return out;
    }
}
