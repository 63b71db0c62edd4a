package dev.moecluster.router.openai;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import io.grpc.Status;
import org.junit.jupiter.api.Test;

class OpenAiRequestTest {
    private static JsonObject json(String s) {
        return JsonParser.parseString(s).getAsJsonObject();
    }

    @Test
    void mapsSamplingParametersOntoGenerate() {
        OpenAiRequest r = OpenAiRequest.completion(json("""
                {"model": "m", "prompt": "hi", "max_tokens": 5, "max_completion_tokens": 7, "temperature": 0.5,
                 "top_p": 0.9, "top_k": -1, "seed": 12345678901, "stop": "END", "n": 3, "stream": true,
                 "stream_options": {"include_usage": true}, "ignore_eos": true, "return_token_ids": true,
                 "logprobs": null, "presence_penalty": 0, "user": "ignored"}"""));
        assertThat(r.model()).isEqualTo("m");
        assertThat(r.prompts()).singleElement().satisfies(p -> assertThat(p.text()).isEqualTo("hi"));
        assertThat(r.sampling().getMaxTokens()).isEqualTo(7); // max_completion_tokens wins, as in vLLM
        assertThat(r.sampling().getTemperature()).isEqualTo(0.5f);
        assertThat(r.sampling().getTopP()).isEqualTo(0.9f);
        assertThat(r.sampling().getTopK()).isZero();
        assertThat(r.sampling().getSeed()).isEqualTo(12345678901L);
        assertThat(r.sampling().getStopList()).containsExactly("END");
        assertThat(r.sampling().getIgnoreEos()).isTrue();
        assertThat(r.n()).isEqualTo(3);
        assertThat(r.stream()).isTrue();
        assertThat(r.includeUsage()).isTrue();
        assertThat(r.returnTokenIds()).isTrue();
    }

    @Test
    void unsetParametersStayUnsetForTheSchedulerDefaults() {
        OpenAiRequest r = OpenAiRequest.completion(json("{\"prompt\": [[1, 2, 3], [4]]}"));
        assertThat(r.model()).isEmpty();
        assertThat(r.prompts()).hasSize(2);
        assertThat(r.prompts().get(0).tokenIds()).containsExactly(1, 2, 3);
        assertThat(r.sampling().hasMaxTokens()).isFalse();
        assertThat(r.sampling().hasTemperature()).isFalse();
        assertThat(r.sampling().hasSeed()).isFalse();
        assertThat(r.n()).isEqualTo(1);
        assertThat(r.stream()).isFalse();
    }

    @Test
    void chatContentPartsBecomeText() {
        OpenAiRequest r = OpenAiRequest.chat(json("""
                {"messages": [{"role": "system", "content": "be brief"},
                              {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}],
                 "stop": ["x", "y"]}"""));
        assertThat(r.messages()).hasSize(2);
        assertThat(r.messages().get(1)).containsEntry("role", "user").containsEntry("content", "a\nb");
        assertThat(r.sampling().getStopList()).containsExactly("x", "y");
    }

    @Test
    void refusesWhatItCannotHonourNamingTheParameter() {
        assertRefused("{\"prompt\": \"a\", \"logit_bias\": {\"5\": 1}}", "logit_bias", "not supported");
        assertRefused("{\"prompt\": \"a\", \"frequency_penalty\": \"lots\"}", "frequency_penalty", "must be a number");
        assertRefused("{\"prompt\": \"a\", \"echo\": true}", "echo", "not supported");
        assertRefused("{\"prompt\": \"a\", \"temperature\": \"hot\"}", "temperature", "must be a number");
        assertRefused("{\"prompt\": \"a\", \"max_tokens\": 0}", "max_tokens", "must be positive");
        assertRefused("{\"prompt\": \"a\", \"n\": 0}", "n", "between 1 and");
        assertRefused("{\"prompt\": \"a\", \"stop\": [\"\"]}", "stop", "must not be empty");
        assertRefused("{\"prompt\": \"a\", \"stop\": 3}", "stop", "string or a list of strings");
        assertRefused("{\"prompt\": \"a\", \"stream_options\": {\"include_usage\": true}}", "stream_options", "only allowed");
        assertRefused("{\"prompt\": \"\"}", "prompt", "empty");
        assertRefused("{\"prompt\": {}}", "prompt", "must be a string");
        assertRefused("{}", "prompt", "required");
        assertThatThrownBy(() -> OpenAiRequest.chat(json("{\"messages\": []}")))
                .isInstanceOfSatisfying(OpenAiError.class, e -> assertThat(e.toJson().getAsJsonObject("error")
                        .get("param").getAsString()).isEqualTo("messages"));
        assertThatThrownBy(() -> OpenAiRequest.chat(json("{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"tools\": [{}]}")))
                .hasMessageContaining("tools");
    }

    @Test
    void logprobsAndPenaltiesMapOntoGenerate() {
        OpenAiRequest completion = OpenAiRequest.completion(json("""
                {"prompt": "a", "logprobs": 3, "presence_penalty": 0.5, "frequency_penalty": -1, "repetition_penalty": 1.2}"""));
        assertThat(completion.sampling().getLogprobs()).isTrue();
        assertThat(completion.sampling().getTopLogprobs()).isEqualTo(3);
        assertThat(completion.sampling().getPresencePenalty()).isEqualTo(0.5f);
        assertThat(completion.sampling().getFrequencyPenalty()).isEqualTo(-1f);
        assertThat(completion.sampling().getRepetitionPenalty()).isEqualTo(1.2f);
        OpenAiRequest chat = OpenAiRequest.chat(json("""
                {"messages": [{"role": "user", "content": "a"}], "logprobs": true, "top_logprobs": 2}"""));
        assertThat(chat.sampling().getLogprobs()).isTrue();
        assertThat(chat.sampling().getTopLogprobs()).isEqualTo(2);
        assertThat(OpenAiRequest.chat(json("{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}], \"logprobs\": false}"))
                .sampling().getLogprobs()).isFalse();
        assertThatThrownBy(() -> OpenAiRequest.chat(json("""
                {"messages": [{"role": "user", "content": "a"}], "top_logprobs": 2}""")))
                .hasMessageContaining("top_logprobs needs logprobs: true");
    }

    @Test
    void schedulerStatusesMapToHttpStatuses() {
        assertThat(OpenAiError.of(Status.INVALID_ARGUMENT.withDescription("x").asRuntimeException()).httpStatus()).isEqualTo(400);
        assertThat(OpenAiError.of(Status.FAILED_PRECONDITION.asRuntimeException()).httpStatus()).isEqualTo(400);
        assertThat(OpenAiError.of(Status.NOT_FOUND.asRuntimeException()).httpStatus()).isEqualTo(404);
        assertThat(OpenAiError.of(Status.RESOURCE_EXHAUSTED.asRuntimeException()).httpStatus()).isEqualTo(429);
        assertThat(OpenAiError.of(Status.UNAVAILABLE.asRuntimeException()).httpStatus()).isEqualTo(503);
        assertThat(OpenAiError.of(Status.INTERNAL.asRuntimeException()).httpStatus()).isEqualTo(500);
        JsonObject error = OpenAiError.of(Status.NOT_FOUND.withDescription("model 'x' is not served here").asRuntimeException())
                .toJson().getAsJsonObject("error");
        assertThat(error.get("message").getAsString()).isEqualTo("model 'x' is not served here");
        assertThat(error.get("code").getAsString()).isEqualTo("model_not_found");
        assertThat(error.get("type").getAsString()).isEqualTo("invalid_request_error");
    }

    private static void assertRefused(String body, String param, String message) {
        assertThatThrownBy(() -> OpenAiRequest.completion(json(body)))
                .isInstanceOfSatisfying(OpenAiError.class, e -> {
                    assertThat(e.httpStatus()).isEqualTo(400);
                    assertThat(e.getMessage()).contains(message);
                    assertThat(e.toJson().getAsJsonObject("error").get("param").getAsString()).isEqualTo(param);
                });
    }
}
