package dev.moecluster.control;

import io.grpc.Status;

/**
 * Error messages of bounded length. A message that quotes a client's input quotes an {@link #excerpt};
 * every status a {@link GrpcEndpoint} sends is {@link #bounded} as a backstop, so no request can make
 * a server send (or a client log) megabytes of its own input back.
 */
public final class ErrorText {
    /** Characters of client input quoted in a message. */
    public static final int MAX_EXCERPT_LENGTH = 80;
    /** Characters of a status description sent to a client. */
    public static final int MAX_STATUS_LENGTH = 1024;

    private ErrorText() {}

    /** {@code input} as quoted in an error message: cut after {@value #MAX_EXCERPT_LENGTH} characters. */
    public static String excerpt(String input) {
        return cut(input, MAX_EXCERPT_LENGTH);
    }

    /** {@code status} with its description cut after {@value #MAX_STATUS_LENGTH} characters. */
    public static Status bounded(Status status) {
        String d = status.getDescription();
        return d == null || d.length() <= MAX_STATUS_LENGTH ? status : status.withDescription(cut(d, MAX_STATUS_LENGTH));
    }

    private static String cut(String s, int max) {
        if (s.length() <= max) {
            return s;
        }
        int end = Character.isHighSurrogate(s.charAt(max - 1)) ? max - 1 : max; // never half a character
        return s.substring(0, end) + "… (" + (s.length() - end) + " more characters)";
    }
}
