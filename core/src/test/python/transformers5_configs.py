"""Writes each hub-layout config.json the way transformers 5.x save_pretrained writes it (Transformers5ConfigTest).

The inputs under configs/hub/ are config.json files as the Hugging Face hub ships them (Mixtral-8x7B,
Qwen3-30B-A3B, Llama 4 Scout and Maverick, and a Qwen3-MoE variant with legacy linear rope_scaling and
sparse layers). Each is loaded with transformers' own config class and saved with save_pretrained into
configs/transformers5/<name>/config.json, so the test sees the renamed keys (dtype, rope_parameters,
Qwen3-MoE's num_local_experts) and the derived fields 5.x writes out (Llama 4's layer_types, moe_layers,
no_rope_layers). No torch is needed. To regenerate, with transformers==5.18.0 installed:

    python core/src/test/python/transformers5_configs.py \
        core/src/test/resources/dev/moecluster/core/model/configs
"""
import json
import os
import sys

import transformers
from transformers import CONFIG_MAPPING


def main(root):
    major = int(transformers.__version__.split(".")[0])
    if major != 5:
        sys.exit("transformers %s is installed; these files must come from 5.x" % transformers.__version__)
    hub = os.path.join(root, "hub")
    for name in sorted(os.listdir(hub)):
        with open(os.path.join(hub, name, "config.json")) as f:
            d = json.load(f)
        text = d.get("text_config") or {}
        # Scout's first hub revision wrote attn_temperature_tuning as 4; 5.x's strict dataclass fields
        # refuse an int for this bool, so it is given as the truth value transformers 4.x read from it.
        if type(text.get("attn_temperature_tuning")) is int:
            text["attn_temperature_tuning"] = bool(text["attn_temperature_tuning"])
        config = CONFIG_MAPPING[d["model_type"]].from_dict(d)
        out = os.path.join(root, "transformers5", name)
        config.save_pretrained(out)
        print(name, type(config).__name__, "->", os.path.join(out, "config.json"))


if __name__ == "__main__":
    main(sys.argv[1])
