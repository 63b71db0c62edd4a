package dev.moecluster.router.openai;

import com.hubspot.jinjava.el.ext.NamedParameter;
import java.beans.FeatureDescriptor;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.Iterator;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import jinjava.javax.el.ELContext;
import jinjava.javax.el.ELResolver;

/**
 * The parts of Jinja2 (Python) that chat templates use and Jinjava lacks, supplied through Jinjava's
 * extension points: Python's string methods ({@code startswith}, {@code split}, {@code strip('\n')}, ...)
 * as an EL resolver, {@code namespace(...)} as a function, and three constructs its parser does not take
 * rewritten into equivalents it does ({@code x[::-1]}, {@code set ns.attr = v}, keyword arguments whose
 * value is an expression). The goldens from transformers check the result.
 */
final class JinjaCompatibility {
    private JinjaCompatibility() {}

    private static final Pattern REVERSED = Pattern.compile("([A-Za-z_][A-Za-z0-9_.]*)\\[\\s*:\\s*:\\s*-1\\s*\\]");
    private static final Pattern SET_ATTRIBUTE = Pattern.compile(
            "\\{%(-?)\\s*set\\s+([A-Za-z_][A-Za-z0-9_]*)\\.([A-Za-z_][A-Za-z0-9_]*)\\s*=\\s*(.*?)\\s*(-?)%}", Pattern.DOTALL);
    private static final Pattern NAMESPACE_CALL = Pattern.compile("\\bnamespace\\(");

    /**
     * Jinja2's lstrip_blocks: spaces and tabs from the start of a line up to a block or comment tag go
     * (Jinjava's own option also strips them after text on the same line: "a {% if %}" loses its space).
     */
    private static final Pattern LINE_START_BEFORE_TAG = Pattern.compile("(?m)^[ \\t]+(?=\\{[%#](?!\\+))");

    /** The template with the constructs Jinjava cannot parse replaced by ones it can, lstrip_blocks applied. */
    static String rewrite(String template) {
        String t = LINE_START_BEFORE_TAG.matcher(template).replaceAll("");
        t = REVERSED.matcher(t).replaceAll("($1|reverse)");
        Matcher m = SET_ATTRIBUTE.matcher(t);
        StringBuilder out = new StringBuilder();
        while (m.find()) {
            // Jinjava's set tag cannot assign an attribute; a namespace is a map, so put the value in it
            m.appendReplacement(out, Matcher.quoteReplacement("{%" + m.group(1) + " do " + m.group(2) + ".put('"
                    + m.group(3) + "', (" + m.group(4) + ")) " + m.group(5) + "%}"));
        }
        m.appendTail(out);
        return parenthesizeKeywordValues(out.toString());
    }

    /**
     * {@code namespace(a=x|length - 1)}: Jinjava binds {@code a=x|length} before the subtraction, so every
     * keyword value of a namespace call is put in parentheses.
     */
    private static String parenthesizeKeywordValues(String t) {
        StringBuilder out = new StringBuilder();
        int at = 0;
        Matcher m = NAMESPACE_CALL.matcher(t);
        while (m.find(at)) {
            int open = m.end();
            int close = matchingParen(t, open - 1);
            if (close < 0) {
                break;
            }
            out.append(t, at, open);
            List<String> args = splitTopLevel(t.substring(open, close));
            List<String> rewritten = new ArrayList<>();
            for (String arg : args) {
                int eq = keywordEquals(arg);
                rewritten.add(eq < 0 ? arg : arg.substring(0, eq + 1) + "(" + arg.substring(eq + 1).strip() + ")");
            }
            out.append(String.join(", ", rewritten)).append(')');
            at = close + 1;
        }
        out.append(t.substring(at));
        return out.toString();
    }

    private static int matchingParen(String t, int open) {
        int depth = 0;
        char quote = 0;
        for (int i = open; i < t.length(); i++) {
            char c = t.charAt(i);
            if (quote != 0) {
                if (c == '\\') {
                    i++;
                } else if (c == quote) {
                    quote = 0;
                }
            } else if (c == '\'' || c == '"') {
                quote = c;
            } else if (c == '(' || c == '[' || c == '{') {
                depth++;
            } else if (c == ')' || c == ']' || c == '}') {
                if (--depth == 0) {
                    return i;
                }
            }
        }
        return -1;
    }

    private static List<String> splitTopLevel(String args) {
        List<String> out = new ArrayList<>();
        int depth = 0;
        char quote = 0;
        int start = 0;
        for (int i = 0; i < args.length(); i++) {
            char c = args.charAt(i);
            if (quote != 0) {
                if (c == '\\') {
                    i++;
                } else if (c == quote) {
                    quote = 0;
                }
            } else if (c == '\'' || c == '"') {
                quote = c;
            } else if (c == '(' || c == '[' || c == '{') {
                depth++;
            } else if (c == ')' || c == ']' || c == '}') {
                depth--;
            } else if (c == ',' && depth == 0) {
                out.add(args.substring(start, i).strip());
                start = i + 1;
            }
        }
        if (!args.isBlank()) {
            out.add(args.substring(start).strip());
        }
        return out;
    }

    /** Index of the '=' of {@code name=value}, or -1 when the argument is positional. */
    private static int keywordEquals(String arg) {
        Matcher m = Pattern.compile("^[A-Za-z_][A-Za-z0-9_]*\\s*=(?!=)").matcher(arg);
        return m.find() ? m.end() - 1 : -1;
    }

    /** {@code namespace(a=1, b=2)}: a mutable map of its keyword arguments. */
    public static Map<String, Object> namespace(Object... args) {
        Map<String, Object> ns = new HashMap<>();
        for (Object a : args) {
            if (a instanceof NamedParameter p) {
                ns.put(p.getName(), p.getValue());
            } else if (a instanceof Map<?, ?> m) {
                m.forEach((k, v) -> ns.put(String.valueOf(k), v));
            }
        }
        return ns;
    }

    /** Python's {@code str} methods on strings, for the names Java's {@code String} does not have or has differently. */
    static final class PythonStringMethods extends ELResolver {
        private static final Set<String> METHODS = Set.of("startswith", "endswith", "split", "rsplit", "strip", "lstrip",
                "rstrip", "upper", "lower", "capitalize", "title", "find", "count", "replace", "join", "isspace");

        @Override
        public Object invoke(ELContext context, Object base, Object method, Class<?>[] paramTypes, Object[] params) {
            if (!(base instanceof String s) || !(method instanceof String name) || !METHODS.contains(name)) {
                return null;
            }
            Object[] p = params == null ? new Object[0] : params;
            Object result = switch (name) {
                case "startswith" -> anyOf(p[0], prefix -> s.startsWith(prefix));
                case "endswith" -> anyOf(p[0], suffix -> s.endsWith(suffix));
                case "split" -> split(s, p.length > 0 ? p[0] : null, p.length > 1 ? ((Number) p[1]).intValue() : -1);
                case "rsplit" -> rsplit(s, p.length > 0 ? p[0] : null, p.length > 1 ? ((Number) p[1]).intValue() : -1);
                case "strip" -> rstrip(lstrip(s, chars(p)), chars(p));
                case "lstrip" -> lstrip(s, chars(p));
                case "rstrip" -> rstrip(s, chars(p));
                case "upper" -> s.toUpperCase(Locale.ROOT);
                case "lower" -> s.toLowerCase(Locale.ROOT);
                case "capitalize" -> s.isEmpty() ? s : s.substring(0, 1).toUpperCase(Locale.ROOT) + s.substring(1).toLowerCase(Locale.ROOT);
                case "title" -> title(s);
                case "find" -> (long) s.indexOf(String.valueOf(p[0]));
                case "count" -> count(s, String.valueOf(p[0]));
                case "replace" -> s.replace(String.valueOf(p[0]), String.valueOf(p[1]));
                case "join" -> join(s, p[0]);
                case "isspace" -> !s.isEmpty() && s.isBlank();
                default -> throw new IllegalStateException(name);
            };
            context.setPropertyResolved(true);
            return result;
        }

        private static boolean anyOf(Object arg, java.util.function.Predicate<String> test) {
            if (arg instanceof Iterable<?> options) {
                for (Object o : options) {
                    if (test.test(String.valueOf(o))) {
                        return true;
                    }
                }
                return false;
            }
            return test.test(String.valueOf(arg));
        }

        /** The characters to strip: Python's default (null) is whitespace. */
        private static String chars(Object[] p) {
            return p.length == 0 || p[0] == null ? null : String.valueOf(p[0]);
        }

        private static boolean strippable(char c, String chars) {
            return chars == null ? Character.isWhitespace(c) : chars.indexOf(c) >= 0;
        }

        private static String lstrip(String s, String chars) {
            int i = 0;
            while (i < s.length() && strippable(s.charAt(i), chars)) {
                i++;
            }
            return s.substring(i);
        }

        private static String rstrip(String s, String chars) {
            int i = s.length();
            while (i > 0 && strippable(s.charAt(i - 1), chars)) {
                i--;
            }
            return s.substring(0, i);
        }

        /** Python's split: a literal separator keeping empty parts; no separator splits on runs of whitespace. */
        private static List<String> split(String s, Object separator, int maxSplit) {
            List<String> out = new ArrayList<>();
            if (separator == null) {
                for (String part : s.strip().split("\\s+", maxSplit < 0 ? 0 : maxSplit + 1)) {
                    if (!part.isEmpty()) {
                        out.add(part);
                    }
                }
                return out;
            }
            String sep = String.valueOf(separator);
            if (sep.isEmpty()) {
                throw new IllegalArgumentException("empty separator");
            }
            int start = 0;
            int found;
            while ((maxSplit < 0 || out.size() < maxSplit) && (found = s.indexOf(sep, start)) >= 0) {
                out.add(s.substring(start, found));
                start = found + sep.length();
            }
            out.add(s.substring(start));
            return out;
        }

        private static List<String> rsplit(String s, Object separator, int maxSplit) {
            if (separator == null || maxSplit < 0) {
                return split(s, separator, maxSplit);
            }
            String sep = String.valueOf(separator);
            List<String> out = new ArrayList<>();
            int end = s.length();
            int found;
            while (out.size() < maxSplit && (found = s.lastIndexOf(sep, end - sep.length())) >= 0) {
                out.addFirst(s.substring(found + sep.length(), end));
                end = found;
            }
            out.addFirst(s.substring(0, end));
            return out;
        }

        private static String title(String s) {
            StringBuilder b = new StringBuilder(s.length());
            boolean start = true;
            for (char c : s.toCharArray()) {
                b.append(start ? Character.toUpperCase(c) : Character.toLowerCase(c));
                start = !Character.isLetter(c);
            }
            return b.toString();
        }

        private static long count(String s, String sub) {
            if (sub.isEmpty()) {
                return s.length() + 1;
            }
            long n = 0;
            for (int i = s.indexOf(sub); i >= 0; i = s.indexOf(sub, i + sub.length())) {
                n++;
            }
            return n;
        }

        private static String join(String separator, Object items) {
            List<String> parts = new ArrayList<>();
            if (items instanceof Iterable<?> it) {
                it.forEach(o -> parts.add(String.valueOf(o)));
            }
            return String.join(separator, parts);
        }

        @Override
        public Object getValue(ELContext context, Object base, Object property) {
            return null;
        }

        @Override
        public Class<?> getType(ELContext context, Object base, Object property) {
            return null;
        }

        @Override
        public void setValue(ELContext context, Object base, Object property, Object value) {
            // read-only: templates only read strings
        }

        @Override
        public boolean isReadOnly(ELContext context, Object base, Object property) {
            return true;
        }

        @Override
        public Iterator<FeatureDescriptor> getFeatureDescriptors(ELContext context, Object base) {
            return null;
        }

        @Override
        public Class<?> getCommonPropertyType(ELContext context, Object base) {
            return null;
        }
    }
}
