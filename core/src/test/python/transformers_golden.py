"""Stores transformers' logits for the decoder tests' tiny models (DecoderModelGoldenTest).

The Java reference decoder is checked against these numbers, so they must come from transformers
itself, run in float32 with eager attention. To regenerate (after changing ModelGenerator or
TinyModels), with torch and transformers==5.18.0 installed:

    ./mvnw -B -q -pl proto,core test-compile
    java --add-modules jdk.incubator.vector -cp core/target/test-classes:core/target/classes:proto/target/classes:GSON_JAR \
        dev.moecluster.core.runner.TinyModels /tmp/tiny-models
    python core/src/test/python/transformers_golden.py /tmp/tiny-models \
        core/src/test/resources/dev/moecluster/core/runner/transformers-golden.json
"""
import json
import os
import sys

import torch
import transformers
from transformers import AutoModelForCausalLM
from transformers.models.llama4 import modeling_llama4
from transformers.models.qwen2_moe import modeling_qwen2_moe
from transformers.models.qwen3_moe import modeling_qwen3_moe

POSITIONS = [0, 9, 17, 23]  # across the Llama 4 chunk boundaries of 8 and 16
GREEDY_TOKENS = 8


def prompt(vocab):
    return [(i * 37 + 5) % vocab for i in range(24)]


def round_routing_weights_to_bf16(router_class, weights_at):
    """Routers cast their weights back to the hidden dtype: Qwen's router_top_value.to(router_logits.dtype),
    Llama 4's sigmoid(...).to(router_scores.dtype).

    The models run in float32 here, but the project's reference MoE block computes in f32 and applies
    that one cast with the checkpoint's dtype, as transformers does when it runs a bf16 checkpoint in
    bf16. For bf16 checkpoints the golden logits therefore round those weights the same way.
    """
    original = router_class.forward

    def forward(self, hidden_states):
        out = list(original(self, hidden_states))
        out[weights_at] = out[weights_at].to(torch.bfloat16).to(out[weights_at].dtype)
        return tuple(out)

    router_class.forward = forward
    return lambda: setattr(router_class, "forward", original)


def main(root, out_file):
    out = {"transformers": transformers.__version__, "torch": torch.__version__, "positions": POSITIONS, "models": {}}
    for name in sorted(os.listdir(root)):
        model = AutoModelForCausalLM.from_pretrained(os.path.join(root, name), dtype=torch.float32,
                                                     attn_implementation="eager")
        model.eval()
        text_config = model.config.get_text_config()
        ids = prompt(text_config.vocab_size)
        x = torch.tensor([ids])
        restore = []
        if "bf16" in name:
            restore = [round_routing_weights_to_bf16(modeling_qwen2_moe.Qwen2MoeTopKRouter, 1),
                       round_routing_weights_to_bf16(modeling_qwen3_moe.Qwen3MoeTopKRouter, 1),
                       round_routing_weights_to_bf16(modeling_llama4.Llama4Router, 0)]
        with torch.no_grad():
            logits = model(x).logits[0]
            generated = model.generate(x, max_new_tokens=GREEDY_TOKENS, min_new_tokens=GREEDY_TOKENS,
                                       do_sample=False, eos_token_id=None, pad_token_id=0)
        for undo in restore:
            undo()
        out["models"][name] = {
            "class": type(model).__name__,
            "prompt": ids,
            "logits": [[float("%.7g" % v) for v in logits[p].tolist()] for p in POSITIONS],
            "greedy": generated[0, len(ids):].tolist(),
        }
        print(name, type(model).__name__, out["models"][name]["greedy"])
    with open(out_file, "w") as f:
        json.dump(out, f, separators=(",", ":"))
        f.write("\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
