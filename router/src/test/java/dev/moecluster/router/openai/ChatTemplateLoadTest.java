package dev.moecluster.router.openai;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class ChatTemplateLoadTest {
    private static final List<Map<String, Object>> HI = List.of(Map.of("role", "user", "content", "hi"));

    @Test
    void readsTheTemplateAndSpecialTokensAsTransformersSavesThem(@TempDir Path dir) throws Exception {
        assertThat(ChatTemplate.load(dir)).isNull();
        // special tokens as AddedToken objects, several named templates: the "default" one is used
        Files.writeString(dir.resolve("tokenizer_config.json"), """
                {"bos_token": {"content": "<s>", "lstrip": false}, "eos_token": "</s>",
                 "chat_template": [{"name": "tool_use", "template": "tools"},
                                   {"name": "default", "template": "{{ bos_token }}{% for m in messages %}[{{ m.role }}] {{ m.content }}{{ eos_token }}{% endfor %}{% if add_generation_prompt %}[assistant]{% endif %}"}]}
                """);
        assertThat(ChatTemplate.load(dir).render(HI, true)).isEqualTo("<s>[user] hi</s>[assistant]");
        // chat_template.jinja (transformers 4.43+ writes it beside the config) wins over the config's
        Files.writeString(dir.resolve("chat_template.jinja"), "{{ messages[0]['content'] | upper }}{{ eos_token }}");
        assertThat(ChatTemplate.load(dir).render(HI, false)).isEqualTo("HI</s>");
    }

    @Test
    void processorTemplateAndTemplateVariables(@TempDir Path dir) throws Exception {
        Files.writeString(dir.resolve("chat_template.json"),
                "{\"chat_template\": \"{% if enable_thinking is defined and enable_thinking is false %}no-think {% endif %}{{ messages[0].content }}\"}");
        ChatTemplate t = ChatTemplate.load(dir);
        assertThat(t.render(HI, true)).isEqualTo("hi");
        assertThat(t.render(HI, true, Map.of("enable_thinking", false))).isEqualTo("no-think hi");
    }

    @Test
    void pythonStringMethodsBehaveAsPythons() {
        ChatTemplate t = ChatTemplate.of("""
                {{- messages[0].content.split(',') | length }}|{{ messages[0].content.strip(' x') }}|\
                {{- messages[0].content.startswith(('a', ' x')) }}|{{ messages[0].content.rsplit(',', 1)[-1] }}|\
                {%- set ns = namespace(n=messages|length - 1, hit=false) %}{% set ns.hit = true %}{{ ns.n }}{{ ns.hit }}|\
                {%- for m in messages[::-1] %}{{ m.role }}{% endfor %}""", Map.of());
        List<Map<String, Object>> messages = List.of(Map.of("role", "user", "content", " x,a,,b x"),
                Map.of("role", "assistant", "content", ""));
        // Java's split would drop the empty parts; Python keeps them
        assertThat(t.render(messages, false)).isEqualTo("4|,a,,b|true|b x|1true|assistantuser");
    }

    @Test
    void brokenTemplatesAndRefusalsAreClearErrors() {
        ChatTemplate broken = ChatTemplate.of("{% for m in messages %}{{ m.content ", Map.of());
        assertThatThrownBy(() -> broken.render(HI, true)).isInstanceOf(IllegalArgumentException.class);
        ChatTemplate refusing = ChatTemplate.of("{{ raise_exception('only system messages, please') }}", Map.of());
        assertThatThrownBy(() -> refusing.render(HI, true)).hasMessage("only system messages, please");
    }
}
