package dev.moecluster.cli;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import dev.moecluster.core.model.Architecture;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.logging.Level;
import java.util.logging.LogRecord;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** What operators configure around the flags: JSON log lines, and flags kept in a file ({@code moe CMD @FILE}). */
class LoggingAndArgFilesTest {
    @TempDir
    Path tmp;

    @Test
    void jsonLogLinesAreOneEscapedObjectEach() {
        LogRecord record = new LogRecord(Level.WARNING, "worker {0} said \"no\"\nthen left");
        record.setParameters(new Object[] {"w-1"});
        record.setLoggerName("dev.moecluster.test");
        record.setThrown(new IllegalStateException("boom"));
        String line = new JsonLogFormatter().format(record);
        assertThat(line.strip()).doesNotContain("\n");
        JsonObject json = JsonParser.parseString(line).getAsJsonObject();
        assertThat(json.get("level").getAsString()).isEqualTo("WARNING");
        assertThat(json.get("logger").getAsString()).isEqualTo("dev.moecluster.test");
        assertThat(json.get("message").getAsString()).isEqualTo("worker w-1 said \"no\"\nthen left");
        assertThat(json.get("exception").getAsString()).startsWith("java.lang.IllegalStateException: boom");
        assertThat(json.get("time").getAsString()).endsWith("Z");
    }

    @Test
    void theLogFormatIsJsonOrText() {
        assertThat(JsonLogFormatter.wanted("json")).isTrue();
        assertThat(JsonLogFormatter.wanted("JSON")).isTrue();
        assertThat(JsonLogFormatter.wanted("text")).isFalse();
        assertThat(JsonLogFormatter.wanted(null)).isFalse();
        assertThatThrownBy(() -> JsonLogFormatter.wanted("yaml")).hasMessageContaining("MOE_LOG_FORMAT must be json or text");
    }

    @Test
    void flagsReadFromAnArgumentFileMeanWhatTheyMeanInline() throws Exception {
        Path model = Clusters.tinyModel(Architecture.MIXTRAL);
        Path file = Files.writeString(tmp.resolve("plan.args"), "# the plan for the tiny model\n--config " + model
                + "\n--accelerator-memory 1GiB\n--replicas 2\n");
        Object[] inline = MoeCommandTest.run("plan", "--config", model.toString(), "--accelerator-memory", "1GiB", "--replicas", "2");
        Object[] fromFile = MoeCommandTest.run("plan", "@" + file);
        assertThat(inline[0]).as(inline[2] + "").isEqualTo(0);
        assertThat(fromFile[0]).as(fromFile[2] + "").isEqualTo(0);
        assertThat(fromFile[1]).isEqualTo(inline[1]);
        assertThat((String) fromFile[1]).contains("replicas");
    }
}
