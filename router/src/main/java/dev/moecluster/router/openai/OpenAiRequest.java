package dev.moecluster.router.openai;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonPrimitive;
import dev.moecluster.proto.SamplingParams;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * A {@code /v1/completions} or {@code /v1/chat/completions} body, checked and mapped onto the
 * {@code moe.v1} sampling parameters the scheduler takes. Parameters this server does not implement
 * are refused with a 400 naming them rather than ignored, so a client never silently gets a
 * different kind of answer than it asked for.
 *
 * @param model the model asked for; empty when the body names none (the served one is used)
 * @param prompts completion prompts (text or token ids); empty for chat
 * @param messages chat messages as the template sees them (role, content as text); empty for completions
 * @param sampling the sampling parameters of each choice (the seed is offset per choice)
 * @param n choices per prompt
 * @param stream answer as server-sent events
 * @param includeUsage with {@code stream}: a last chunk carrying usage ({@code stream_options.include_usage})
 * @param returnTokenIds add each choice's generated token ids ({@code return_token_ids}, as vLLM's extension)
 * @param templateVariables extra chat-template variables ({@code chat_template_kwargs}, as vLLM's extension,
 *     e.g. Qwen3's {@code enable_thinking})
 */
record OpenAiRequest(String model, List<Prompt> prompts, List<Map<String, Object>> messages, SamplingParams sampling,
        int n, boolean stream, boolean includeUsage, boolean returnTokenIds, Map<String, Object> templateVariables) {

    /** Most choices per prompt: each is a sequence in the shared batch. */
    static final int MAX_N = 128;

    /** A completion prompt: text, or token ids. */
    record Prompt(String text, int[] tokenIds) {}

    static OpenAiRequest completion(JsonObject body) {
        refuseUnsupported(body, false);
        if (present(body, "echo") && bool(body, "echo")) {
            throw OpenAiError.unsupported("echo", "echo");
        }
        if (present(body, "suffix")) {
            throw OpenAiError.unsupported("suffix", "suffix");
        }
        return common(body, prompts(body), List.of(), false);
    }

    static OpenAiRequest chat(JsonObject body) {
        refuseUnsupported(body, true);
        return common(body, List.of(), messages(body), true);
    }

    private static OpenAiRequest common(JsonObject body, List<Prompt> prompts, List<Map<String, Object>> messages,
            boolean chat) {
        String model = present(body, "model") ? string(body, "model") : "";
        SamplingParams.Builder s = SamplingParams.newBuilder();
        // as vLLM: max_completion_tokens (the newer name) wins over max_tokens
        String maxName = present(body, "max_completion_tokens") ? "max_completion_tokens" : "max_tokens";
        if (present(body, maxName)) {
            int max = integer(body, maxName);
            if (max <= 0) {
                throw OpenAiError.badRequest(maxName, maxName + " must be positive, got " + max);
            }
            s.setMaxTokens(max);
        }
        if (present(body, "temperature")) {
            s.setTemperature((float) number(body, "temperature"));
        }
        if (present(body, "top_p")) {
            s.setTopP((float) number(body, "top_p"));
        }
        if (present(body, "top_k")) {
            int k = integer(body, "top_k");
            if (k < -1) {
                throw OpenAiError.badRequest("top_k", "top_k must be -1 or 0 (no limit) or positive, got " + k);
            }
            s.setTopK(Math.max(0, k));
        }
        if (present(body, "seed")) {
            s.setSeed(longInteger(body, "seed"));
        }
        if (present(body, "ignore_eos")) {
            s.setIgnoreEos(bool(body, "ignore_eos"));
        }
        s.addAllStop(stops(body));
        for (String penalty : new String[] {"presence_penalty", "frequency_penalty", "repetition_penalty"}) {
            if (present(body, penalty)) {
                float v = (float) number(body, penalty);
                switch (penalty) {
                    case "presence_penalty" -> s.setPresencePenalty(v);
                    case "frequency_penalty" -> s.setFrequencyPenalty(v);
                    default -> s.setRepetitionPenalty(v);
                }
            }
        }
        logprobs(body, chat, s);
        int n = present(body, "n") ? integer(body, "n") : 1;
        if (n < 1 || n > MAX_N) {
            throw OpenAiError.badRequest("n", "n must be between 1 and " + MAX_N + ", got " + n);
        }
        if (present(body, "best_of") && integer(body, "best_of") != n) {
            throw OpenAiError.unsupported("best_of", "best_of other than n");
        }
        boolean stream = present(body, "stream") && bool(body, "stream");
        boolean includeUsage = false;
        if (present(body, "stream_options")) {
            if (!stream) {
                throw OpenAiError.badRequest("stream_options", "stream_options is only allowed when stream is true");
            }
            JsonObject options = object(body, "stream_options");
            includeUsage = present(options, "include_usage") && bool(options, "include_usage");
        }
        boolean returnTokenIds = present(body, "return_token_ids") && bool(body, "return_token_ids");
        Map<String, Object> templateVariables = new LinkedHashMap<>();
        if (chat && present(body, "chat_template_kwargs")) {
            object(body, "chat_template_kwargs").entrySet().forEach(e -> templateVariables.put(e.getKey(), plain(e.getValue())));
        }
        return new OpenAiRequest(model, prompts, messages, s.build(), n, stream, includeUsage, returnTokenIds,
                templateVariables);
    }

    /** A JSON value as the template engine sees Python's: strings, booleans, numbers, lists, maps, null. */
    private static Object plain(JsonElement e) {
        if (e == null || e.isJsonNull()) {
            return null;
        }
        if (e.isJsonPrimitive()) {
            JsonPrimitive p = e.getAsJsonPrimitive();
            if (p.isBoolean()) {
                return p.getAsBoolean();
            }
            if (p.isNumber()) {
                double d = p.getAsDouble();
                return d == Math.rint(d) && Math.abs(d) < 1e15 ? (Object) p.getAsLong() : (Object) d;
            }
            return p.getAsString();
        }
        if (e.isJsonArray()) {
            List<Object> list = new ArrayList<>();
            e.getAsJsonArray().forEach(x -> list.add(plain(x)));
            return list;
        }
        Map<String, Object> map = new LinkedHashMap<>();
        e.getAsJsonObject().entrySet().forEach(x -> map.put(x.getKey(), plain(x.getValue())));
        return map;
    }

    private static void refuseUnsupported(JsonObject body, boolean chat) {
        if (present(body, "logit_bias") && !(body.get("logit_bias").isJsonObject() && body.getAsJsonObject("logit_bias").isEmpty())) {
            throw OpenAiError.unsupported("logit_bias", "logit_bias");
        }
        if (chat) {
            if (present(body, "tools") && !(body.get("tools").isJsonArray() && body.getAsJsonArray("tools").isEmpty())) {
                throw OpenAiError.unsupported("tools", "tools (function calling)");
            }
            if (present(body, "tool_choice") && !"none".equals(body.get("tool_choice").isJsonPrimitive()
                    ? body.get("tool_choice").getAsString() : null)) {
                throw OpenAiError.unsupported("tool_choice", "tool_choice");
            }
            if (present(body, "response_format")) {
                JsonElement f = body.get("response_format");
                if (!(f.isJsonObject() && f.getAsJsonObject().has("type")
                        && "text".equals(f.getAsJsonObject().get("type").getAsString()))) {
                    throw OpenAiError.unsupported("response_format", "response_format other than {\"type\": \"text\"}");
                }
            }
        }
    }

    /**
     * Completions: {@code logprobs} is how many alternatives to list (0 for the sampled token's only).
     * Chat: {@code logprobs} true, with {@code top_logprobs} alternatives.
     */
    private static void logprobs(JsonObject body, boolean chat, SamplingParams.Builder s) {
        if (chat) {
            boolean on = present(body, "logprobs") && bool(body, "logprobs");
            if (present(body, "top_logprobs")) {
                if (!on) {
                    throw OpenAiError.badRequest("top_logprobs", "top_logprobs needs logprobs: true");
                }
                s.setTopLogprobs(integer(body, "top_logprobs"));
            }
            s.setLogprobs(on);
        } else if (present(body, "logprobs")) {
            s.setLogprobs(true).setTopLogprobs(integer(body, "logprobs"));
        }
    }

    private static List<Prompt> prompts(JsonObject body) {
        if (!present(body, "prompt")) {
            throw OpenAiError.badRequest("prompt", "prompt is required");
        }
        JsonElement p = body.get("prompt");
        List<Prompt> out = new ArrayList<>();
        if (p.isJsonPrimitive() && p.getAsJsonPrimitive().isString()) {
            out.add(new Prompt(p.getAsString(), null));
        } else if (p.isJsonArray() && !p.getAsJsonArray().isEmpty()) {
            JsonArray a = p.getAsJsonArray();
            JsonElement first = a.get(0);
            if (first.isJsonPrimitive() && first.getAsJsonPrimitive().isNumber()) {
                out.add(new Prompt(null, tokenIds(a)));
            } else {
                for (JsonElement e : a) {
                    if (e.isJsonPrimitive() && e.getAsJsonPrimitive().isString()) {
                        out.add(new Prompt(e.getAsString(), null));
                    } else if (e.isJsonArray()) {
                        out.add(new Prompt(null, tokenIds(e.getAsJsonArray())));
                    } else {
                        throw promptShape();
                    }
                }
            }
        } else {
            throw promptShape();
        }
        for (Prompt prompt : out) {
            if (prompt.text() != null ? prompt.text().isEmpty() : prompt.tokenIds().length == 0) {
                throw OpenAiError.badRequest("prompt", "prompt is empty");
            }
        }
        return out;
    }

    private static OpenAiError promptShape() {
        return OpenAiError.badRequest("prompt",
                "prompt must be a string, a list of strings, a list of token ids or a list of such lists");
    }

    private static int[] tokenIds(JsonArray a) {
        int[] ids = new int[a.size()];
        for (int i = 0; i < ids.length; i++) {
            JsonElement e = a.get(i);
            if (!(e.isJsonPrimitive() && e.getAsJsonPrimitive().isNumber()) || e.getAsDouble() != Math.rint(e.getAsDouble())) {
                throw promptShape();
            }
            ids[i] = e.getAsInt();
        }
        return ids;
    }

    private static List<Map<String, Object>> messages(JsonObject body) {
        if (!present(body, "messages") || !body.get("messages").isJsonArray() || body.getAsJsonArray("messages").isEmpty()) {
            throw OpenAiError.badRequest("messages", "messages must be a non-empty list of {role, content}");
        }
        List<Map<String, Object>> out = new ArrayList<>();
        JsonArray a = body.getAsJsonArray("messages");
        for (int i = 0; i < a.size(); i++) {
            String param = "messages[" + i + "]";
            if (!a.get(i).isJsonObject()) {
                throw OpenAiError.badRequest(param, param + " must be an object with role and content");
            }
            JsonObject m = a.get(i).getAsJsonObject();
            if (!present(m, "role") || !m.get("role").isJsonPrimitive()) {
                throw OpenAiError.badRequest(param + ".role", param + ".role is required");
            }
            Map<String, Object> message = new LinkedHashMap<>();
            message.put("role", m.get("role").getAsString());
            message.put("content", present(m, "content") ? content(m.get("content"), param + ".content") : "");
            if (present(m, "name") && m.get("name").isJsonPrimitive()) {
                message.put("name", m.get("name").getAsString());
            }
            out.add(message);
        }
        return out;
    }

    /** Content as text: a string, or text parts joined by newlines (vLLM's "string" content format). */
    private static String content(JsonElement c, String param) {
        if (c.isJsonPrimitive() && c.getAsJsonPrimitive().isString()) {
            return c.getAsString();
        }
        if (!c.isJsonArray()) {
            throw OpenAiError.badRequest(param, param + " must be a string or a list of content parts");
        }
        List<String> texts = new ArrayList<>();
        for (JsonElement part : c.getAsJsonArray()) {
            if (!part.isJsonObject() || !part.getAsJsonObject().has("type")) {
                throw OpenAiError.badRequest(param, param + " parts must be objects with a type");
            }
            String type = part.getAsJsonObject().get("type").getAsString();
            if (!type.equals("text")) {
                throw OpenAiError.unsupported(param, "content of type '" + type + "' (only text)");
            }
            texts.add(part.getAsJsonObject().get("text").getAsString());
        }
        return String.join("\n", texts);
    }

    private static List<String> stops(JsonObject body) {
        if (!present(body, "stop")) {
            return List.of();
        }
        JsonElement s = body.get("stop");
        List<String> out = new ArrayList<>();
        if (s.isJsonPrimitive() && s.getAsJsonPrimitive().isString()) {
            out.add(s.getAsString());
        } else if (s.isJsonArray()) {
            for (JsonElement e : s.getAsJsonArray()) {
                if (!(e.isJsonPrimitive() && e.getAsJsonPrimitive().isString())) {
                    throw OpenAiError.badRequest("stop", "stop must be a string or a list of strings");
                }
                out.add(e.getAsString());
            }
        } else {
            throw OpenAiError.badRequest("stop", "stop must be a string or a list of strings");
        }
        for (String stop : out) {
            if (stop.isEmpty()) {
                throw OpenAiError.badRequest("stop", "stop strings must not be empty");
            }
        }
        return out;
    }

    /** Present and not null: clients send {@code null} for "not given". */
    static boolean present(JsonObject o, String name) {
        return o.has(name) && !o.get(name).isJsonNull();
    }

    private static String string(JsonObject o, String name) {
        JsonElement e = o.get(name);
        if (!(e.isJsonPrimitive() && e.getAsJsonPrimitive().isString())) {
            throw OpenAiError.badRequest(name, name + " must be a string");
        }
        return e.getAsString();
    }

    private static boolean bool(JsonObject o, String name) {
        JsonElement e = o.get(name);
        if (!(e.isJsonPrimitive() && e.getAsJsonPrimitive().isBoolean())) {
            throw OpenAiError.badRequest(name, name + " must be true or false");
        }
        return e.getAsBoolean();
    }

    private static double number(JsonObject o, String name) {
        JsonElement e = o.get(name);
        if (!(e.isJsonPrimitive() && e.getAsJsonPrimitive().isNumber())) {
            throw OpenAiError.badRequest(name, name + " must be a number");
        }
        return e.getAsDouble();
    }

    private static int integer(JsonObject o, String name) {
        long v = longInteger(o, name);
        if (v != (int) v) {
            throw OpenAiError.badRequest(name, name + " is out of range: " + v);
        }
        return (int) v;
    }

    private static long longInteger(JsonObject o, String name) {
        JsonElement e = o.get(name);
        if (!(e.isJsonPrimitive() && e.getAsJsonPrimitive().isNumber())) {
            throw OpenAiError.badRequest(name, name + " must be an integer");
        }
        try {
            return e.getAsJsonPrimitive().getAsBigDecimal().longValueExact();
        } catch (ArithmeticException notAnInteger) {
            throw OpenAiError.badRequest(name, name + " must be an integer, got " + e);
        }
    }

    private static JsonObject object(JsonObject o, String name) {
        JsonElement e = o.get(name);
        if (!e.isJsonObject()) {
            throw OpenAiError.badRequest(name, name + " must be an object");
        }
        return e.getAsJsonObject();
    }
}
