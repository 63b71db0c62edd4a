package dev.moecluster.cli;

import com.google.gson.JsonObject;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.time.Instant;
import java.util.logging.Formatter;
import java.util.logging.LogRecord;

/**
 * One JSON object per log line ({@code MOE_LOG_FORMAT=json}), for log pipelines that parse fields:
 * {@code time} (ISO-8601, UTC), {@code level}, {@code logger}, {@code message}, {@code thread} and, when
 * there is one, {@code exception} with its stack trace. Messages are escaped, so a line is always one record.
 */
final class JsonLogFormatter extends Formatter {
    /** The environment variable that selects the format: {@code json}, or {@code text} (the default). */
    static final String ENV = "MOE_LOG_FORMAT";

    @Override
    public String format(LogRecord record) {
        JsonObject line = new JsonObject();
        line.addProperty("time", Instant.ofEpochMilli(record.getMillis()).toString());
        line.addProperty("level", record.getLevel().getName());
        line.addProperty("logger", record.getLoggerName());
        line.addProperty("message", formatMessage(record));
        line.addProperty("thread", Thread.currentThread().getName());
        if (record.getThrown() != null) {
            StringWriter trace = new StringWriter();
            record.getThrown().printStackTrace(new PrintWriter(trace));
            line.addProperty("exception", trace.toString());
        }
        return line + System.lineSeparator();
    }

    /** Whether {@code value} (the environment variable's) asks for JSON; anything but json or text is refused. */
    static boolean wanted(String value) {
        if (value == null || value.isBlank() || value.equalsIgnoreCase("text")) {
            return false;
        }
        if (value.equalsIgnoreCase("json")) {
            return true;
        }
        throw new IllegalArgumentException(ENV + " must be json or text, got '" + value + "'");
    }
}
