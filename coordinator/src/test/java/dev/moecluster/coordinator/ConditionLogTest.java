package dev.moecluster.coordinator;

import static org.assertj.core.api.Assertions.assertThat;

import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.logging.Handler;
import java.util.logging.LogRecord;
import java.util.logging.Logger;
import org.junit.jupiter.api.Test;

class ConditionLogTest {
    @Test
    void logsAConditionWhenItStartsChangesAndEndsNotOnEveryTick() {
        Logger logger = Logger.getAnonymousLogger();
        logger.setUseParentHandlers(false);
        List<String> lines = new CopyOnWriteArrayList<>();
        logger.addHandler(new Handler() {
            @Override
            public void publish(LogRecord r) {
                lines.add(r.getLevel() + " " + r.getMessage());
            }

            @Override
            public void flush() {}

            @Override
            public void close() {}
        });
        ConditionLog log = new ConditionLog(logger, "cannot place experts");
        log.ended("nothing to end"); // never held: silent
        for (int tick = 0; tick < 40; tick++) {
            log.holds("min replicas 2 needs 2 distinct workers, short by 1 worker(s)");
        }
        assertThat(log.holds()).isTrue();
        log.holds("not enough worker memory, short by 3 copies");
        log.holds("not enough worker memory, short by 3 copies");
        log.ended("the experts fit on 2 active worker(s)");
        log.ended("the experts fit on 2 active worker(s)");
        assertThat(log.holds()).isFalse();
        log.holds("not enough worker memory, short by 3 copies"); // back again: logged again
        assertThat(lines).containsExactly(
                "WARNING cannot place experts: min replicas 2 needs 2 distinct workers, short by 1 worker(s)",
                "WARNING cannot place experts: not enough worker memory, short by 3 copies",
                "INFO resolved (cannot place experts): the experts fit on 2 active worker(s)",
                "WARNING cannot place experts: not enough worker memory, short by 3 copies");
    }
}
