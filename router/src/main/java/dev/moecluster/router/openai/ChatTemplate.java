package dev.moecluster.router.openai;

import static java.util.Objects.requireNonNull;

import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import com.hubspot.jinjava.Jinjava;
import com.hubspot.jinjava.JinjavaConfig;
import com.hubspot.jinjava.LegacyOverrides;
import com.hubspot.jinjava.el.JinjavaInterpreterResolver;
import com.hubspot.jinjava.interpret.RenderResult;
import com.hubspot.jinjava.interpret.TemplateError;
import com.hubspot.jinjava.lib.fn.ELFunctionDefinition;
import java.io.IOException;
import jinjava.javax.el.CompositeELResolver;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * A model's chat template (the Jinja in {@code chat_template.jinja} or {@code tokenizer_config.json}),
 * rendered with Jinjava the way transformers' {@code apply_chat_template} renders it: blocks trimmed and
 * left-stripped, {@code messages}, {@code add_generation_prompt}, the special tokens ({@code bos_token},
 * {@code eos_token}, ...), {@code tools} absent, and {@code raise_exception} for the template's own refusals.
 */
public final class ChatTemplate {
    private final String source;
    private final Map<String, Object> specialTokens;
    private final Jinjava jinjava;

    private ChatTemplate(String source, Map<String, Object> specialTokens) {
        this.source = JinjaCompatibility.rewrite(source);
        this.specialTokens = Map.copyOf(specialTokens);
        // transformers renders with trim_blocks and lstrip_blocks (the latter applied by JinjaCompatibility,
        // as Jinjava's differs); the legacy overrides make Jinjava honour
        // "{{-" / "-}}" on expressions and parse whitespace control and operators as Jinja2 does
        LegacyOverrides jinja2 = LegacyOverrides.newBuilder()
                .withUseTrimmingForNotesAndExpressions(true)
                .withParseWhitespaceControlStrictly(true)
                .withUseNaturalOperatorPrecedence(true)
                .withKeepNullableLoopValues(true)
                .build();
        CompositeELResolver resolver = new CompositeELResolver();
        resolver.add(new JinjaCompatibility.PythonStringMethods());
        resolver.add(JinjavaInterpreterResolver.DEFAULT_RESOLVER_READ_ONLY);
        this.jinjava = new Jinjava(JinjavaConfig.newBuilder().withTrimBlocks(true).withLstripBlocks(false)
                .withLegacyOverrides(jinja2).withElResolver(resolver).build());
        jinjava.getGlobalContext().registerFunction(new ELFunctionDefinition("", "raise_exception", ChatTemplate.class,
                "raiseException", String.class));
        jinjava.getGlobalContext().registerFunction(new ELFunctionDefinition("", "namespace", JinjaCompatibility.class,
                "namespace", Object[].class));
    }

    /** A template with the special tokens ({@code bos_token}, {@code eos_token}, ...) it may refer to. */
    public static ChatTemplate of(String template, Map<String, String> specialTokens) {
        requireNonNull(template, "template is null");
        return new ChatTemplate(template, new HashMap<>(specialTokens));
    }

    /**
     * The model directory's template: {@code chat_template.jinja}, else {@code tokenizer_config.json}'s
     * {@code chat_template} (its "default" one when it lists several), else {@code chat_template.json}'s;
     * null when there is none. Special tokens come from {@code tokenizer_config.json}.
     */
    public static ChatTemplate load(Path modelDir) throws IOException {
        JsonObject tokenizerConfig = json(modelDir.resolve("tokenizer_config.json"));
        Map<String, String> tokens = new LinkedHashMap<>();
        if (tokenizerConfig != null) {
            for (String name : List.of("bos_token", "eos_token", "unk_token", "pad_token", "sep_token", "cls_token",
                    "mask_token")) {
                String token = tokenText(tokenizerConfig.get(name));
                if (token != null) {
                    tokens.put(name, token);
                }
            }
        }
        Path jinja = modelDir.resolve("chat_template.jinja");
        if (Files.exists(jinja)) {
            return of(Files.readString(jinja), tokens);
        }
        String fromConfig = tokenizerConfig == null ? null : templateText(tokenizerConfig.get("chat_template"));
        if (fromConfig != null) {
            return of(fromConfig, tokens);
        }
        JsonObject processor = json(modelDir.resolve("chat_template.json"));
        String fromProcessor = processor == null ? null : templateText(processor.get("chat_template"));
        return fromProcessor == null ? null : of(fromProcessor, tokens);
    }

    private static JsonObject json(Path file) throws IOException {
        if (!Files.exists(file)) {
            return null;
        }
        JsonElement e = JsonParser.parseString(Files.readString(file));
        return e.isJsonObject() ? e.getAsJsonObject() : null;
    }

    /** A special token as tokenizer_config.json writes it: a string, or an AddedToken object with "content". */
    private static String tokenText(JsonElement e) {
        if (e == null || e.isJsonNull()) {
            return null;
        }
        if (e.isJsonObject() && e.getAsJsonObject().has("content")) {
            return e.getAsJsonObject().get("content").getAsString();
        }
        return e.isJsonPrimitive() ? e.getAsString() : null;
    }

    /** A template as a string, or the "default" one of a list of {name, template}. */
    private static String templateText(JsonElement e) {
        if (e == null || e.isJsonNull()) {
            return null;
        }
        if (e.isJsonPrimitive()) {
            return e.getAsString();
        }
        if (e.isJsonArray()) {
            for (JsonElement t : e.getAsJsonArray()) {
                JsonObject o = t.getAsJsonObject();
                if (o.has("name") && o.get("name").getAsString().equals("default")) {
                    return o.get("template").getAsString();
                }
            }
        }
        return null;
    }

    /**
     * The prompt for {@code messages} (maps with {@code role} and {@code content}), ending with the
     * assistant's header when {@code addGenerationPrompt}.
     *
     * @throws IllegalArgumentException with the template's message when it refuses the conversation
     *     ({@code raise_exception}) or cannot be rendered
     */
    public String render(List<Map<String, Object>> messages, boolean addGenerationPrompt) {
        return render(messages, addGenerationPrompt, Map.of());
    }

    /**
     * As {@link #render(List, boolean)}, with extra variables for the template (vLLM's
     * {@code chat_template_kwargs}, e.g. Qwen3's {@code enable_thinking}); they cannot replace the messages.
     */
    public String render(List<Map<String, Object>> messages, boolean addGenerationPrompt, Map<String, Object> variables) {
        Map<String, Object> context = new HashMap<>(specialTokens);
        context.putAll(variables);
        context.put("messages", messages);
        context.put("add_generation_prompt", addGenerationPrompt);
        RenderResult result = jinjava.renderForResult(source, context);
        for (TemplateError error : result.getErrors()) {
            if (error.getSeverity() == TemplateError.ErrorType.FATAL) {
                for (Throwable t = error.getException(); t != null; t = t.getCause()) {
                    if (t instanceof Refusal refusal) {
                        throw new IllegalArgumentException(refusal.getMessage());
                    }
                }
                throw new IllegalArgumentException("the chat template cannot be rendered: " + error.getMessage()
                        + (error.getLineno() > 0 ? " (line " + error.getLineno() + ")" : ""));
            }
        }
        return result.getOutput();
    }

    /** What {@code raise_exception(message)} throws: the template's own refusal of a conversation. */
    private static final class Refusal extends RuntimeException {
        Refusal(String message) {
            super(message, null, false, false);
        }
    }

    /** {@code raise_exception(message)} in a template: transformers raises a TemplateError with it. */
    public static String raiseException(String message) {
        throw new Refusal(message);
    }
}
