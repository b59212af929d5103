"""lm-evaluation-harness (model `local-completions`, tokenizer `remote`: the server's /tokenize) runs a 4-way
multiple-choice task written as local JSONL (tests/fixtures/lm_eval/kjv_cloze.jsonl; no downloads) against hyrax:
  * every loglikelihood it computes equals hyrax's own scoring: the log-softmax of `hyrax logits` over the same ids;
  * its accuracy equals lm-eval's `hf` backend (transformers, float32, CPU) on the same checkpoint, recorded by
    tools/lm_eval_reference.py in tests/fixtures/lm_eval/hf_reference.json (CI needs no torch)."""
import json
import math
import os
import subprocess
import sys
import tempfile
import unittest

import numpy as np

import server_util as su

sys.path.insert(0, os.path.join(su.SOURCE_DIR, "tools"))
import lm_eval_reference as ref  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


class LmEval(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = su.Server("--model", su.DEMO_MODEL, "--max-memory", "256M", "--max-seqs", "16", threads=2)
        with open(ref.REFERENCE, encoding="utf-8") as f:
            cls.hf = json.load(f)

    @classmethod
    def tearDownClass(cls):
        assert cls.server.stop() == 0
        cls.server.__exit__()

    def tokenize(self, text):
        status, body = self.server.post("/tokenize", {"prompt": text, "add_special_tokens": False})
        self.assertEqual(status, 200, body)
        return body["tokens"]

    def encode_pair(self, context, continuation):
        """lm-eval's TemplateLM._encode_pair for a causal model."""
        n = len(context) - len(context.rstrip())
        if n:
            continuation, context = context[-n:] + continuation, context[:-n]
        whole, ctx = self.tokenize(context + continuation), self.tokenize(context)
        return ctx, whole[len(ctx):]

    def hyrax_score(self, ctx, cont, tmp):
        """Sum of log-softmax(hyrax logits) over the continuation, and whether it is the greedy path."""
        ids = ctx + cont
        ids_file, out = os.path.join(tmp, "ids.txt"), os.path.join(tmp, "logits.f32")
        with open(ids_file, "w", encoding="utf-8") as f:
            f.write(" ".join(map(str, ids)))
        # The server prefills in pieces of 512 positions; the same split here gives the same logits, bit for bit.
        subprocess.run([su.HYRAX_BIN, "logits", "--model", su.DEMO_MODEL, "--ids-file", ids_file, "--out", out,
                        "--chunk", "512", "--threads", "1"], check=True)
        logits = np.fromfile(out, dtype=np.float32).reshape(len(ids), -1).astype(np.float64)
        mx = logits.max(axis=1, keepdims=True)
        logp = logits - mx - np.log(np.exp(logits - mx).sum(axis=1, keepdims=True))
        rows = range(len(ctx) - 1, len(ids) - 1)
        total = sum(logp[r, ids[r + 1]] for r in rows)
        greedy = all(int(np.argmax(logits[r])) == ids[r + 1] for r in rows)
        return float(total), greedy

    def test_local_completions_equals_hyrax_and_hf(self):
        import lm_eval
        from lm_eval.tasks import TaskManager
        with tempfile.TemporaryDirectory() as d:
            os.environ["HF_DATASETS_CACHE"] = os.path.join(d, "cache")
            tm = TaskManager(include_path=ref.write_task_dir(d))
            args = (f"model={su.MODEL_ID},base_url={self.server.url}/v1/completions,tokenizer_backend=remote,"
                    "tokenized_requests=True,num_concurrent=4,max_retries=1,max_length=4096")
            results = lm_eval.simple_evaluate(model="local-completions", model_args=args, tasks=[ref.TASK_NAME],
                                              task_manager=tm, batch_size=4, log_samples=True)
            got = ref.summarize(results)
            samples = sorted(results["samples"][ref.TASK_NAME], key=lambda s: s["doc_id"])

            # 1. Every loglikelihood equals hyrax's own scoring of the same ids.
            n = 0
            for s, lls, greedy in zip(samples, got["loglikelihoods"], got["is_greedy"]):
                for (context, continuation), ll, g in zip(s["arguments"], lls, greedy):
                    ctx, cont = self.encode_pair(context, continuation)
                    want, want_greedy = self.hyrax_score(ctx, cont, d)
                    self.assertTrue(math.isclose(ll, want, rel_tol=1e-9, abs_tol=1e-9),
                                    f"doc {s['doc_id']}: lm-eval {ll!r}, hyrax {want!r}")
                    self.assertEqual(g, want_greedy)
                    n += 1
            self.assertEqual(n, 4 * 48)

        # 2. Accuracy equals lm-eval's hf backend (transformers) on the same checkpoint; loglikelihoods agree to
        # float32 tolerance (hyrax and transformers are two float32 implementations).
        self.assertEqual(got["acc"], self.hf["acc"])
        self.assertEqual(got["acc_norm"], self.hf["acc_norm"])
        for i, (a, b) in enumerate(zip(got["loglikelihoods"], self.hf["loglikelihoods"])):
            for x, y in zip(a, b):
                self.assertTrue(math.isclose(x, y, rel_tol=1e-4, abs_tol=1e-3), f"doc {i}: hyrax {x}, hf {y}")
        self.assertEqual(got["is_greedy"], self.hf["is_greedy"])
        m = self.server.metrics()
        self.assertEqual(m["hyrax_requests_failed_total"], 0)
        self.assertEqual(m["hyrax_kv_blocks_used"], 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
