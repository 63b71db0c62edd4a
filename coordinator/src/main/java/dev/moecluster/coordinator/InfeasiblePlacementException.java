package dev.moecluster.coordinator;

/**
 * The workers cannot hold the model under the policy: too little memory or too few workers for the
 * minimum replica count. The message names the shortfall.
 */
public final class InfeasiblePlacementException extends RuntimeException {
    InfeasiblePlacementException(String message) {
        super(message);
    }
}
