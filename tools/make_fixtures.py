#!/usr/bin/env python3
"""Builds the reference fixtures hyrax's model tests compare against.

Each fixture is a tiny random OlmoHybridForCausalLM written the way users get checkpoints (save_pretrained, or a
hand-written variant of it) plus what transformers computes on it:
  tests/fixtures/<name>/            the model folder (config.json, generation_config.json, safetensors)
  tests/fixtures/<name>/reference/  meta.json (input ids, greedy prompt and continuation, margins) and
                                    logits.f32 (float32 little-endian [T, vocab], every position, float32 math)

Run with transformers 5.17 + torch (tools/requirements.txt), on CPU:  python tools/make_fixtures.py
Bf16 fixtures store bf16 weights; their reference runs float32 math on those same (bf16-rounded) weights, so a
float32 engine must match them as tightly as the f32 fixtures.
Note: transformers 5.17 reloads "rope_parameters": null as RoPE theta=10000 (PreTrainedConfig fills in a default
rope_theta); the NoPE references are therefore computed on the in-memory model that save_pretrained wrote, whose
rotary embedding is None, which is what the checkpoint means.
"""
import copy
import json
import os
import shutil
import sys

import torch
import transformers
from safetensors.torch import save_file
from transformers import OlmoHybridConfig, OlmoHybridForCausalLM

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures")
VOCAB = 512
EOS = 1


def base_config(**kw):
    cfg = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=4, num_attention_heads=4,
               pad_token_id=0, eos_token_id=EOS, initializer_range=0.08, max_position_embeddings=4096)
    cfg.update(kw)
    return cfg


FIXTURES = [
    # name, config kwargs, options
    ("nope_mha_f32",
     base_config(num_hidden_layers=8, linear_allow_neg_eigval=True, tie_word_embeddings=False),
     dict(rope=None, dtype="f32", T=300, layout="saved")),
    ("rope_gqa_tied_f32",
     base_config(num_hidden_layers=6, num_key_value_heads=2, linear_num_key_heads=2, linear_num_value_heads=4,
                 linear_key_head_dim=16, linear_value_head_dim=24, linear_allow_neg_eigval=False,
                 tie_word_embeddings=True,
                 layer_types=["linear_attention", "full_attention", "linear_attention", "linear_attention",
                              "full_attention", "linear_attention"]),
     dict(rope=10000.0, dtype="f32", T=300, layout="sharded")),
    ("legacy_rope_bf16",
     base_config(num_hidden_layers=4, linear_allow_neg_eigval=True),
     dict(rope=5000.0, legacy_rope=True, dtype="bf16", T=200, layout="module_names")),
    ("nope_gqa_headdim_bf16",
     base_config(num_hidden_layers=5, num_attention_heads=6, num_key_value_heads=2, head_dim=16,
                 linear_num_key_heads=2, linear_num_value_heads=6, linear_key_head_dim=12, linear_value_head_dim=16,
                 layer_types=["full_attention", "linear_attention", "linear_attention", "full_attention",
                              "linear_attention"]),
     dict(rope=None, dtype="bf16", T=160, layout="saved")),
]


def randomize_vectors(model, gen):
    """Norm weights start at ones; give every 1-D parameter but A_log/dt_bias a random value so that the engine
    must apply each one (a missing or swapped norm would otherwise go unnoticed)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1 and not name.endswith(("A_log", "dt_bias")):
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=gen))
            elif name.endswith("conv1d.weight"):
                p.copy_(0.5 * torch.randn(p.shape, generator=gen))


def build(name, cfg_kw, opt, seed):
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    config = OlmoHybridConfig(**cfg_kw)
    if opt["rope"] is None:
        config.rope_parameters = None
    else:
        config.rope_parameters = {"rope_type": "default", "rope_theta": opt["rope"]}
    model = OlmoHybridForCausalLM(config).eval()
    randomize_vectors(model, gen)
    if opt["dtype"] == "bf16":
        # Round the parameters to bf16 values but keep float32 math and float32 buffers (RoPE's inv_freq), as
        # from_pretrained(dtype=torch.float32) of a bf16 checkpoint does.
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(p.to(torch.bfloat16).float())
    return config, model


def greedy(model, prompt, n):
    out = model.generate(torch.tensor([prompt]), max_new_tokens=n, do_sample=False, eos_token_id=EOS,
                         pad_token_id=0, output_scores=True, return_dict_in_generate=True)
    cont = out.sequences[0, len(prompt):].tolist()
    margins = []
    for s in out.scores:
        top = torch.topk(s[0].float(), 2).values
        margins.append(float(top[0] - top[1]))
    return cont, margins


def write(name, cfg_kw, opt, seed):
    config, reference = build(name, cfg_kw, opt, seed)
    model = copy.deepcopy(reference).to(torch.bfloat16) if opt["dtype"] == "bf16" else reference
    folder = os.path.join(OUT, name)
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    if opt["layout"] == "sharded":
        model.save_pretrained(folder, max_shard_size="150KB")
    elif opt["layout"] == "module_names":
        # The un-renamed module spelling (input_layernorm, post_attention_layernorm, fused conv1d), as a writer
        # other than transformers might produce it.
        model.save_pretrained(folder)
        for f in os.listdir(folder):
            if f.endswith(".safetensors"):
                os.remove(os.path.join(folder, f))
        state = {k: v.contiguous() for k, v in model.state_dict().items() if k != "lm_head.weight" or
                 not config.tie_word_embeddings}
        save_file(state, os.path.join(folder, "model.safetensors"), metadata={"format": "pt"})
    else:
        model.save_pretrained(folder)
    if opt.get("legacy_rope"):
        path = os.path.join(folder, "config.json")
        cj = json.load(open(path))
        cj.pop("rope_parameters", None)
        cj["rope_theta"] = opt["rope"]
        json.dump(cj, open(path, "w"), indent=2)

    gen = torch.Generator().manual_seed(seed + 1)
    T = opt["T"]
    ids = torch.randint(2, VOCAB, (T,), generator=gen).tolist()
    with torch.no_grad():
        logits = reference(torch.tensor([ids])).logits[0].float().contiguous()
    prompt = ids[:12]
    cont, margins = greedy(reference, prompt, 24)

    ref_dir = os.path.join(folder, "reference")
    os.makedirs(ref_dir)
    logits.numpy().astype("<f4").tofile(os.path.join(ref_dir, "logits.f32"))
    meta = {
        "fixture": name,
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "weights_dtype": opt["dtype"],
        "layout": opt["layout"],
        "positions": "NoPE" if opt["rope"] is None else f"RoPE theta={opt['rope']}" +
                     (" (legacy top-level rope_theta)" if opt.get("legacy_rope") else ""),
        "vocab_size": VOCAB,
        "ids": ids,
        "greedy_prompt": prompt,
        "greedy_continuation": cont,
        "greedy_min_margin": min(margins),
        "max_abs_logit": float(logits.abs().max()),
    }
    json.dump(meta, open(os.path.join(ref_dir, "meta.json"), "w"), indent=1)
    print(f"{name}: T={T} max|logit|={meta['max_abs_logit']:.3f} greedy={len(cont)} tokens, "
          f"min margin {min(margins):.4f}")


def main():
    names = sys.argv[1:]
    for i, (name, cfg_kw, opt) in enumerate(FIXTURES):
        if names and name not in names:
            continue
        write(name, cfg_kw, opt, seed=1000 + i)


if __name__ == "__main__":
    main()
