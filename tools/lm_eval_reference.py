#!/usr/bin/env python3
"""The lm-evaluation-harness reference for hyrax's server test (tests/py/test_server_lm_eval.py).

  make-task  writes tests/fixtures/lm_eval/kjv_cloze.jsonl: a 4-way multiple-choice cloze over verses of the demo
             model's held-out KJV chapters (context = a verse's first half; endings = its second half and the second
             halves of three other verses). Needs the `bible` program (scripts/setup.sh installs it).
  hf         runs lm-eval's `hf` backend (transformers, float32, CPU) on that task with the demo model and records
             accuracy and every loglikelihood in tests/fixtures/lm_eval/hf_reference.json, so that CI (no torch)
             can compare hyrax's `local-completions` run against it.

The hf run needs torch + transformers (the tools virtualenv) and lm-eval with what it imports. lm-eval, datasets and
friends are taken from the test virtualenv (.venv, see tests/requirements.txt) by appending its site-packages to the
path after the tools environment's own; accelerate (which lm-eval's hf backend imports) from --extra-path:

  .venv/bin/pip install --no-deps --target build/lm-eval-hf accelerate==1.15.0 psutil==7.2.2
  /work/venvs/tools/bin/python tools/lm_eval_reference.py hf --extra-path build/lm-eval-hf
"""
import argparse
import datetime
import glob
import json
import os
import random
import re
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "tests", "fixtures", "lm_eval")
TASK_JSONL = os.path.join(FIXTURES, "kjv_cloze.jsonl")
REFERENCE = os.path.join(FIXTURES, "hf_reference.json")
DEMO_MODEL = os.path.join(ROOT, "models", "kjv-hybrid")
TASK_NAME = "hyrax_kjv_cloze"


def task_yaml(jsonl_path: str) -> str:
    """The lm-eval task definition over the local JSONL (no downloads)."""
    return (f"task: {TASK_NAME}\n"
            "dataset_path: json\n"
            "dataset_kwargs:\n"
            "  data_files:\n"
            f"    test: {json.dumps(jsonl_path)}\n"
            "test_split: test\n"
            "output_type: multiple_choice\n"
            "doc_to_text: \"{{context}}\"\n"
            "doc_to_choice: endings\n"
            "doc_to_target: label\n"
            "target_delimiter: \" \"\n"
            "metric_list:\n"
            "  - metric: acc\n"
            "    aggregation: mean\n"
            "    higher_is_better: true\n"
            "  - metric: acc_norm\n"
            "    aggregation: mean\n"
            "    higher_is_better: true\n")


def write_task_dir(dir_path: str, jsonl_path: str = TASK_JSONL) -> str:
    with open(os.path.join(dir_path, f"{TASK_NAME}.yaml"), "w", encoding="utf-8") as f:
        f.write(task_yaml(jsonl_path))
    return dir_path


def verses(text: str):
    """(chapter index, verse text) for every verse of the `bible -l80` output."""
    chapter, current = -1, None
    for line in text.splitlines():
        if re.match(r"^\S.* \d+$", line):  # a chapter heading: "Genesis 1"
            if current:
                yield current
                current = None
            chapter += 1
            continue
        m = re.match(r"^\s+\d+ (.*)$", line)
        if m:
            if current:
                yield current
            current = (chapter, m.group(1).strip())
        elif line.strip() and current:
            current = (current[0], current[1] + " " + line.strip())
    if current:
        yield current


def make_task(n_docs: int = 48, seed: int = 2026):
    sys.path.insert(0, os.path.join(ROOT, "tools", "tokenizer"))
    import extract_kjv  # noqa: E402
    with tempfile.TemporaryDirectory() as d:
        with open(extract_kjv.extract(os.path.join(d, "kjv.txt")), encoding="utf-8") as f:
            text = f.read()
    # Held-out chapters of the demo model (tools/train_demo.py holds out chapter i where i % 20 == 7).
    pool = [v for c, v in verses(text) if c % 20 == 7 and 12 <= len(v.split()) <= 30]
    rng = random.Random(seed)
    picked = rng.sample(pool, n_docs)
    halves = [(" ".join(v.split()[:len(v.split()) // 2]), " ".join(v.split()[len(v.split()) // 2:])) for v in picked]
    os.makedirs(FIXTURES, exist_ok=True)
    with open(TASK_JSONL, "w", encoding="utf-8") as f:
        for i, (ctx, gold) in enumerate(halves):
            others = rng.sample([h[1] for j, h in enumerate(halves) if j != i], 3)
            label = rng.randrange(4)
            endings = others[:label] + [gold] + others[label:]
            f.write(json.dumps({"id": i, "context": ctx, "endings": endings, "label": label}) + "\n")
    print(f"wrote {TASK_JSONL}: {n_docs} documents")


def summarize(results: dict) -> dict:
    """Accuracy and every (doc, choice) loglikelihood from an lm-eval results dict (log_samples=True)."""
    r = results["results"][TASK_NAME]
    samples = sorted(results["samples"][TASK_NAME], key=lambda s: s["doc_id"])
    return {
        "acc": r["acc,none"],
        "acc_norm": r["acc_norm,none"],
        "loglikelihoods": [[float(resp[0][0]) for resp in s["resps"]] for s in samples],
        "is_greedy": [[bool(resp[0][1]) for resp in s["resps"]] for s in samples],
    }


def run_hf(extra_paths):
    site = glob.glob(os.path.join(ROOT, ".venv", "lib", "python3*", "site-packages"))
    for p in extra_paths + site:
        sys.path.append(os.path.abspath(p))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    import torch
    import transformers
    import lm_eval
    from lm_eval.tasks import TaskManager
    with tempfile.TemporaryDirectory() as d:
        os.environ["HF_DATASETS_CACHE"] = os.path.join(d, "cache")
        tm = TaskManager(include_path=write_task_dir(d))
        results = lm_eval.simple_evaluate(model="hf", model_args=f"pretrained={DEMO_MODEL},dtype=float32",
                                          tasks=[TASK_NAME], task_manager=tm, device="cpu", batch_size=1,
                                          log_samples=True)
    out = summarize(results)
    out["recorded"] = {
        "by": "tools/lm_eval_reference.py hf",
        "date": datetime.date.today().isoformat(),
        "lm_eval": lm_eval.__version__ if hasattr(lm_eval, "__version__") else "0.4.13",
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "model": "models/kjv-hybrid (float32 math, CPU)",
    }
    with open(REFERENCE, "w", encoding="utf-8") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    print(f"hf: acc {out['acc']:.4f}, acc_norm {out['acc_norm']:.4f} -> {REFERENCE}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["make-task", "hf"])
    ap.add_argument("--extra-path", action="append", default=[], help="more site-packages for the hf run")
    args = ap.parse_args()
    if args.what == "make-task":
        make_task()
    else:
        run_hf(args.extra_path)


if __name__ == "__main__":
    main()
