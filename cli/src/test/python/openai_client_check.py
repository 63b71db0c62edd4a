"""Drives a running moe-cluster router with the official OpenAI Python client; prints what it got as JSON.

OpenAiClusterTest starts a local cluster and runs this script; the assertions live in the test. By hand:

    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install openai   # .ci/run installs it from a local wheel store first
    ./moe local --http-port 8000 &                                  # or any router with --http-port
    /tmp/venv/bin/python cli/src/test/python/openai_client_check.py http://127.0.0.1:8000/v1 TOKEN MODEL "Once upon a time"

Arguments: base URL, bearer token (anything when the router needs none), served model id, prompt.
Every call is made with max_retries=0 so that refusals (401, 404, 429) come back as they are.
"""
import json
import sys

import openai
from openai import OpenAI


def completion_dict(c):
    return {
        "id": c.id,
        "object": c.object,
        "model": c.model,
        "choices": [
            {
                "index": ch.index,
                "text": ch.text,
                "finish_reason": ch.finish_reason,
                "token_ids": getattr(ch, "token_ids", None) or (ch.model_extra or {}).get("token_ids"),
            }
            for ch in c.choices
        ],
        "usage": c.usage.model_dump() if c.usage else None,
    }


def refusal(call):
    try:
        call()
    except openai.APIStatusError as e:
        body = e.body if isinstance(e.body, dict) else {}
        return {"status": e.status_code, "message": body.get("message") or str(e), "type": body.get("type"),
                "code": body.get("code"), "error_class": type(e).__name__}
    return {"status": 200}


def main():
    base_url, token, model, prompt = sys.argv[1:5]
    client = OpenAI(base_url=base_url, api_key=token, max_retries=0, timeout=120)
    out = {"client_version": openai.__version__}

    out["models"] = [m.id for m in client.models.list().data]

    greedy = dict(model=model, prompt=prompt, max_tokens=12, temperature=0,
                  extra_body={"return_token_ids": True, "ignore_eos": True})
    out["greedy"] = completion_dict(client.completions.create(**greedy))

    text, finish, usage, ids, chunks = "", None, None, [], 0
    for chunk in client.completions.create(stream=True, stream_options={"include_usage": True}, **greedy):
        chunks += 1
        if chunk.usage is not None:
            usage = chunk.usage.model_dump()
        for ch in chunk.choices:
            text += ch.text
            ids += (ch.model_extra or {}).get("token_ids") or []
            if ch.finish_reason is not None:
                finish = ch.finish_reason
    out["streamed"] = {"text": text, "finish_reason": finish, "usage": usage, "token_ids": ids, "chunks": chunks}

    out["n2"] = completion_dict(client.completions.create(model=model, prompt=prompt, max_tokens=8, n=2,
                                                          temperature=1.0, seed=7))

    # stop strings taken from the greedy text: generation must end just before the first one that appears
    greedy_text = out["greedy"]["choices"][0]["text"]
    mid = len(greedy_text) // 2
    stops = ["\u0007never-there", greedy_text[mid:mid + 2]] if len(greedy_text) >= 4 else ["\u0007never-there"]
    out["stop"] = {"stops": stops, **completion_dict(client.completions.create(
        model=model, prompt=prompt, max_tokens=12, temperature=0, stop=stops, extra_body={"ignore_eos": True}))}

    lp = client.completions.create(model=model, prompt=prompt, max_tokens=6, temperature=0, logprobs=2,
                                   extra_body={"return_token_ids": True, "ignore_eos": True})
    out["logprobs"] = {"token_ids": (lp.choices[0].model_extra or {}).get("token_ids"),
                       "logprobs": lp.choices[0].logprobs.model_dump()}

    penalized = client.completions.create(model=model, prompt=prompt, max_tokens=12, temperature=0,
                                          presence_penalty=1.5, frequency_penalty=1.0,
                                          extra_body={"repetition_penalty": 1.3, "return_token_ids": True,
                                                      "ignore_eos": True})
    out["penalized"] = completion_dict(penalized)

    chat_messages = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": prompt}]

    def chat():
        r = client.chat.completions.create(model=model, messages=chat_messages, max_completion_tokens=8, temperature=0)
        out["chat"] = {"content": r.choices[0].message.content, "role": r.choices[0].message.role,
                       "finish_reason": r.choices[0].finish_reason, "usage": r.usage.model_dump(), "object": r.object}

    out["chat_refusal"] = refusal(chat)
    if out["chat_refusal"]["status"] == 200:
        content, role, finish = "", None, None
        for chunk in client.chat.completions.create(model=model, messages=chat_messages, max_completion_tokens=8,
                                                    temperature=0, stream=True):
            for ch in chunk.choices:
                role = ch.delta.role or role
                content += ch.delta.content or ""
                finish = ch.finish_reason or finish
        out["chat_streamed"] = {"content": content, "role": role, "finish_reason": finish}
        r = client.chat.completions.create(model=model, messages=chat_messages, max_completion_tokens=4, temperature=0,
                                           logprobs=True, top_logprobs=2)
        out["chat_logprobs"] = {"content": [c.model_dump() for c in r.choices[0].logprobs.content],
                                "completion_tokens": r.usage.completion_tokens}

    wrong = OpenAI(base_url=base_url, api_key="not-the-token", max_retries=0)
    out["wrong_token"] = refusal(lambda: wrong.models.list())
    out["unknown_model"] = refusal(lambda: client.completions.create(model="no-such-model", prompt=prompt, max_tokens=2))
    out["bad_parameter"] = refusal(lambda: client.completions.create(model=model, prompt=prompt, max_tokens=2,
                                                                     temperature=-1))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
