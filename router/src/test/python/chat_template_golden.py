"""Renders the chat templates in router/src/test/resources/chat-templates with transformers (ChatTemplateGoldenTest).

The router renders chat templates with Jinjava; these prompts come from transformers' own renderer (the
function apply_chat_template calls, with the special tokens it passes), so the test checks that both
produce the same text. Only jinja2 and transformers are needed (no torch). To regenerate, from the
repository root:

    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install transformers==5.18.0 jinja2
    /tmp/venv/bin/python router/src/test/python/chat_template_golden.py \
        router/src/test/resources/chat-templates router/src/test/resources/chat-templates/golden.json

The templates themselves: llama4.jinja is the Llama 4 template transformers ships
(transformers.models.llama4.processing_llama4.chat_template, also in Meta's Llama-4-*-Instruct repos);
mixtral.jinja is mistralai/Mixtral-8x7B-Instruct-v0.1's tokenizer_config.json chat_template; qwen3.jinja
is the Qwen3 release's (Qwen/Qwen3-0.6B ... Qwen3-30B-A3B tokenizer_config.json chat_template).
"""
import json
import os
import sys

import transformers
from transformers.utils.chat_template_utils import render_jinja_template

# the special tokens each model's tokenizer_config.json declares (apply_chat_template passes them all)
SPECIAL_TOKENS = {
    "llama4": {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot|>", "pad_token": "<|finetune_right_pad|>"},
    "mixtral": {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"},
    "qwen3": {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"},
}

CONVERSATIONS = [
    ("user only", [{"role": "user", "content": "Hello!"}]),
    ("system and user", [{"role": "system", "content": "You are a terse assistant."},
                         {"role": "user", "content": "What is a mixture of experts?"}]),
    ("multi-turn", [{"role": "system", "content": "  Answer in one line.  "},
                    {"role": "user", "content": "Name a prime."},
                    {"role": "assistant", "content": "Seven."},
                    {"role": "user", "content": "Another one, \"quoted\" & <tagged>?"}]),
    ("ends with the assistant", [{"role": "user", "content": "Say hi."},
                                 {"role": "assistant", "content": "Hi."}]),
    ("unicode and newlines", [{"role": "user", "content": "Grüße, 世界 🙂\nline two\n\n  indented"}]),
    ("assistant with reasoning", [{"role": "user", "content": "2+2?"},
                                  {"role": "assistant", "content": "<think>\nadd them\n</think>\n\n4"},
                                  {"role": "user", "content": "And 3+3?"}]),
    ("roles out of order", [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]),
]


# chat_template_kwargs (vLLM's extension) reach the template as variables, as apply_chat_template's kwargs do
WITH_VARIABLES = [
    ("qwen3", "thinking off", [{"role": "user", "content": "Hello!"}], {"enable_thinking": False}),
    ("qwen3", "thinking on", [{"role": "user", "content": "Hello!"}], {"enable_thinking": True}),
]


def render(template, messages, add_generation_prompt, tokens, variables):
    rendered, _ = render_jinja_template(conversations=[messages], chat_template=template,
                                        add_generation_prompt=add_generation_prompt, **tokens, **variables)
    return rendered[0]


def main():
    templates_dir, out = sys.argv[1], sys.argv[2]
    cases = []
    for name in sorted(SPECIAL_TOKENS):
        with open(os.path.join(templates_dir, name + ".jinja"), encoding="utf-8") as f:
            template = f.read()
        for title, messages in CONVERSATIONS:
            for add_generation_prompt in (True, False):
                case = {"template": name, "title": title, "add_generation_prompt": add_generation_prompt,
                        "special_tokens": SPECIAL_TOKENS[name], "messages": messages}
                try:
                    case["rendered"] = render(template, messages, add_generation_prompt, SPECIAL_TOKENS[name], {})
                except Exception as e:  # the template's raise_exception: the router must refuse the same chats
                    case["error"] = str(e)
                cases.append(case)
    for name, title, messages, variables in WITH_VARIABLES:
        with open(os.path.join(templates_dir, name + ".jinja"), encoding="utf-8") as f:
            template = f.read()
        cases.append({"template": name, "title": title, "add_generation_prompt": True,
                      "special_tokens": SPECIAL_TOKENS[name], "messages": messages, "variables": variables,
                      "rendered": render(template, messages, True, SPECIAL_TOKENS[name], variables)})
    with open(out, "w", encoding="utf-8") as f:
        json.dump({"transformers": transformers.__version__, "cases": cases}, f, ensure_ascii=False, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
