#!/usr/bin/env python3
"""The bf16 noise floor of each fixture: transformers itself, run in bfloat16 on the GPU, against its own float32
reference logits (tests/fixtures/<name>/reference). hyrax's GPU backend keeps activations in bf16 too, so its
distance from the reference is judged against this one (docs/CUDA.md, tests/gpu/test_gpu_model.cpp).

NoPE fixtures are reloaded with rope_parameters = None set on the config after loading, as tools/make_fixtures.py
built them (transformers 5.17 would otherwise fill in a default RoPE).
"""
import glob
import json
import os
import sys

import numpy as np
import torch
from transformers import AutoConfig, AutoModelForCausalLM


def compare(got, want):
    lw = want - want.max(1, keepdims=True)
    lw -= np.log(np.exp(lw).sum(1, keepdims=True))
    lg = got - got.max(1, keepdims=True)
    lg -= np.log(np.exp(lg).sum(1, keepdims=True))
    kl = (np.exp(lw) * (lw - lg)).sum(1)
    return (got.argmax(1) == want.argmax(1)).mean(), kl.mean(), kl.max()


def main():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    for meta_path in sorted(glob.glob(os.path.join(root, "tests/fixtures/*/reference/meta.json"))):
        d = os.path.dirname(os.path.dirname(meta_path))
        name = os.path.basename(d)
        meta = json.load(open(meta_path))
        V = meta["vocab_size"]
        want = np.fromfile(os.path.join(d, "reference/logits.f32"), dtype=np.float32).reshape(-1, V)
        raw = json.load(open(os.path.join(d, "config.json")))
        nope = raw.get("rope_parameters", "absent") is None and "rope_theta" not in raw
        for dtype in (torch.float32, torch.bfloat16):
            try:
                cfg = AutoConfig.from_pretrained(d)
                if nope:
                    cfg.rope_parameters = None
                model = AutoModelForCausalLM.from_pretrained(d, config=cfg, dtype=dtype).cuda().eval()
                with torch.no_grad():
                    got = model(torch.tensor([meta["ids"]], device="cuda")).logits[0].float().cpu().numpy()
                top1, klm, klx = compare(got.astype(np.float64), want.astype(np.float64))
                print(f"transformers {str(dtype).replace('torch.', ''):8} GPU {name:24} vs its float32 reference: "
                      f"top-1 {100 * top1:6.2f}%  KL mean {klm:.2e} max {klx:.2e}")
            except Exception as e:  # noqa: BLE001
                print(f"transformers {dtype} {name}: failed: {type(e).__name__}: {e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
