package dev.moecluster.coordinator;

import static java.util.Objects.requireNonNull;

import java.util.logging.Level;
import java.util.logging.Logger;

/**
 * A condition the leader finds again on every tick (four a second), such as experts that cannot be
 * placed: logged as a warning when it starts or its details change, and once more when it ends, not
 * on every tick that still sees it.
 */
final class ConditionLog {
    private final Logger log;
    private final String condition;
    private String details; // null while the condition does not hold

    ConditionLog(Logger log, String condition) {
        this.log = requireNonNull(log, "log is null");
        this.condition = requireNonNull(condition, "condition is null");
    }

    /** The condition holds with these details; logs only when they differ from the last ones. */
    void holds(String details) {
        requireNonNull(details, "details is null");
        if (!details.equals(this.details)) {
            this.details = details;
            log.log(Level.WARNING, condition + ": " + details);
        }
    }

    /** The condition no longer holds; logs that once, if it held. */
    void ended(String how) {
        if (details != null) {
            details = null;
            log.log(Level.INFO, "resolved (" + condition + "): " + how);
        }
    }

    /** Whether the condition holds now (as last reported). */
    boolean holds() {
        return details != null;
    }
}
