package dev.moecluster.router.openai;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * The real chat templates of Llama 4, Mixtral and Qwen3 rendered by {@link ChatTemplate} give exactly the
 * prompts transformers renders (golden.json, from router/src/test/python/chat_template_golden.py),
 * including the conversations a template refuses.
 */
class ChatTemplateGoldenTest {
    private static final Path DIR = Path.of("src/test/resources/chat-templates");

    static Stream<Arguments> cases() throws IOException {
        JsonObject golden = JsonParser.parseString(Files.readString(DIR.resolve("golden.json"))).getAsJsonObject();
        List<Arguments> out = new ArrayList<>();
        for (JsonElement e : golden.getAsJsonArray("cases")) {
            JsonObject c = e.getAsJsonObject();
            out.add(Arguments.of(c.get("template").getAsString() + ": " + c.get("title").getAsString()
                    + (c.get("add_generation_prompt").getAsBoolean() ? " + generation prompt" : ""), c));
        }
        return out.stream();
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("cases")
    void rendersAsTransformersDoes(String name, JsonObject c) throws IOException {
        Map<String, String> tokens = new LinkedHashMap<>();
        c.getAsJsonObject("special_tokens").entrySet().forEach(t -> tokens.put(t.getKey(), t.getValue().getAsString()));
        ChatTemplate template = ChatTemplate.of(Files.readString(DIR.resolve(c.get("template").getAsString() + ".jinja")), tokens);
        List<Map<String, Object>> messages = new ArrayList<>();
        for (JsonElement m : c.getAsJsonArray("messages")) {
            Map<String, Object> message = new LinkedHashMap<>();
            m.getAsJsonObject().entrySet().forEach(f -> message.put(f.getKey(), f.getValue().getAsString()));
            messages.add(message);
        }
        boolean generationPrompt = c.get("add_generation_prompt").getAsBoolean();
        Map<String, Object> variables = new LinkedHashMap<>();
        if (c.has("variables")) {
            c.getAsJsonObject("variables").entrySet().forEach(v -> variables.put(v.getKey(), v.getValue().getAsBoolean()));
        }
        if (c.has("error")) {
            assertThatThrownBy(() -> template.render(messages, generationPrompt))
                    .isInstanceOf(IllegalArgumentException.class)
                    .hasMessageContaining(c.get("error").getAsString());
        } else {
            assertThat(template.render(messages, generationPrompt, variables)).isEqualTo(c.get("rendered").getAsString());
        }
    }
}
