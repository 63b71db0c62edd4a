package dev.moecluster.router.openai;

import com.google.gson.JsonObject;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;

/**
 * A refusal in OpenAI's error shape, {@code {"error": {"message", "type", "param", "code"}}}, with its
 * HTTP status and the gRPC code it counts as in the router's metrics. gRPC statuses from the shared
 * scheduler map onto it ({@link #of(StatusRuntimeException)}), so both APIs refuse alike.
 */
final class OpenAiError extends RuntimeException {
    private final int httpStatus;
    private final String type;
    private final String param;
    private final String code;
    private final Status.Code grpcCode;

    OpenAiError(int httpStatus, String type, String param, String code, Status.Code grpcCode, String message) {
        super(message, null, false, false);
        this.httpStatus = httpStatus;
        this.type = type;
        this.param = param;
        this.code = code;
        this.grpcCode = grpcCode;
    }

    /** 400: something in the request is wrong; {@code param} names the field, or is null. */
    static OpenAiError badRequest(String param, String message) {
        return new OpenAiError(400, "invalid_request_error", param, null, Status.Code.INVALID_ARGUMENT, message);
    }

    /** 400 for a parameter this server does not implement (rather than ignoring it and answering differently). */
    static OpenAiError unsupported(String param, String what) {
        return new OpenAiError(400, "invalid_request_error", param, "unsupported_parameter", Status.Code.INVALID_ARGUMENT,
                what + " is not supported by this server");
    }

    static OpenAiError unauthorized(String message) {
        return new OpenAiError(401, "invalid_request_error", null, "invalid_api_key", Status.Code.UNAUTHENTICATED, message);
    }

    static OpenAiError notFound(String message) {
        return new OpenAiError(404, "invalid_request_error", null, "not_found", Status.Code.NOT_FOUND, message);
    }

    static OpenAiError methodNotAllowed(String method, String path, String allowed) {
        return new OpenAiError(405, "invalid_request_error", null, "method_not_allowed", Status.Code.UNIMPLEMENTED,
                method + " is not allowed on " + path + "; use " + allowed);
    }

    static OpenAiError unavailable(String message) {
        return new OpenAiError(503, "service_unavailable_error", null, null, Status.Code.UNAVAILABLE, message);
    }

    /** The HTTP form of a status from the scheduler (the same refusals gRPC {@code Generate} gives). */
    static OpenAiError of(StatusRuntimeException e) {
        Status s = e.getStatus();
        String message = s.getDescription() != null ? s.getDescription() : s.getCode().name();
        return switch (s.getCode()) {
            case INVALID_ARGUMENT, FAILED_PRECONDITION, OUT_OF_RANGE ->
                    new OpenAiError(400, "invalid_request_error", null, null, s.getCode(), message);
            case NOT_FOUND -> new OpenAiError(404, "invalid_request_error", "model", "model_not_found", s.getCode(), message);
            // the queue or the KV-cache budget is full: retrying later can succeed (clients back off on 429)
            case RESOURCE_EXHAUSTED -> new OpenAiError(429, "rate_limit_error", null, null, s.getCode(), message);
            case UNAVAILABLE -> new OpenAiError(503, "service_unavailable_error", null, null, s.getCode(), message);
            case UNAUTHENTICATED -> new OpenAiError(401, "invalid_request_error", null, "invalid_api_key", s.getCode(), message);
            case DEADLINE_EXCEEDED -> new OpenAiError(504, "timeout_error", null, null, s.getCode(), message);
            case CANCELLED -> new OpenAiError(499, "cancelled", null, null, s.getCode(), message);
            default -> new OpenAiError(500, "server_error", null, null, s.getCode(), message);
        };
    }

    int httpStatus() {
        return httpStatus;
    }

    Status.Code grpcCode() {
        return grpcCode;
    }

    JsonObject toJson() {
        JsonObject error = new JsonObject();
        error.addProperty("message", getMessage());
        error.addProperty("type", type);
        error.addProperty("param", param);
        error.addProperty("code", code);
        JsonObject body = new JsonObject();
        body.add("error", error);
        return body;
    }
}
