#!/usr/bin/env python3
"""The hyrax command line on the transformers fixtures: outputs, spellings and one-line errors."""
import json
import os
import subprocess
import tempfile
import unittest

import numpy as np

HYRAX = os.environ.get("HYRAX_BIN", "build/hyrax")
ROOT = os.environ.get("HYRAX_SOURCE_DIR", ".")
FIX = os.path.join(ROOT, "tests", "fixtures")


def run(*args, check=True):
    p = subprocess.run([HYRAX, *args], capture_output=True, text=True, timeout=300)
    if check and p.returncode != 0:
        raise AssertionError(f"hyrax {' '.join(args)} failed ({p.returncode}): {p.stderr}")
    return p


def meta(name):
    with open(os.path.join(FIX, name, "reference", "meta.json")) as f:
        return json.load(f)


class Cli(unittest.TestCase):
    def test_generate_prints_transformers_greedy_ids(self):
        for name in ("nope_mha_f32", "rope_gqa_tied_f32"):
            m = meta(name)
            out = run("generate", "--model", os.path.join(FIX, name), "--ids", " ".join(map(str, m["greedy_prompt"])),
                      "-n", str(len(m["greedy_continuation"])), "--temperature", "0", "--print-ids").stdout
            self.assertEqual(out.split(), [str(i) for i in m["greedy_continuation"]], name)

    def test_logits_file_matches_reference(self):
        m = meta("legacy_rope_bf16")
        ref = np.fromfile(os.path.join(FIX, "legacy_rope_bf16", "reference", "logits.f32"), dtype="<f4")
        with tempfile.TemporaryDirectory() as d:
            ids = os.path.join(d, "ids.txt")
            with open(ids, "w") as f:
                f.write("\n".join(map(str, m["ids"])))
            out = os.path.join(d, "logits.bin")
            run("logits", "--model", os.path.join(FIX, "legacy_rope_bf16"), "--ids-file", ids, "--out", out,
                "--threads", "2")
            got = np.fromfile(out, dtype="<f4")
        self.assertEqual(got.size, len(m["ids"]) * m["vocab_size"])
        got, ref = got.reshape(len(m["ids"]), -1), ref.reshape(len(m["ids"]), -1)
        rel = np.abs(got - ref).max(1) / np.abs(ref).max(1)
        self.assertLess(rel.max(), 1e-4)

    def test_sampling_is_reproducible_from_the_seed(self):
        args = ["generate", "--model", os.path.join(FIX, "nope_mha_f32"), "--ids", "5 6 7 8", "-n", "20",
                "--temperature", "1.0", "--top-p", "0.9", "--top-k", "50", "--print-ids", "--ignore-eos"]
        a = run(*args, "--seed", "11").stdout.split()
        b = run(*args, "--seed", "11").stdout.split()
        c = run(*args, "--seed", "12").stdout.split()
        self.assertEqual(len(a), 20)
        self.assertEqual(a, b)
        self.assertNotEqual(a, c)

    def test_info_describes_the_model(self):
        out = run("info", "--model", os.path.join(FIX, "nope_gqa_headdim_bf16")).stdout
        self.assertIn("olmo_hybrid", out)
        self.assertIn("ALLAL", out)
        self.assertIn("NoPE", out)
        self.assertIn("state per seq", out)

    def assertOneLineError(self, p, *needles):
        self.assertNotEqual(p.returncode, 0)
        lines = p.stderr.strip().splitlines()
        self.assertEqual(len(lines), 1, p.stderr)
        self.assertTrue(lines[0].startswith("hyrax: error: "), p.stderr)
        for n in needles:
            self.assertIn(n, lines[0])

    def test_bad_input_is_one_clear_line(self):
        with tempfile.TemporaryDirectory() as d:
            self.assertOneLineError(run("info", "--model", os.path.join(d, "nope"), check=False), "nope",
                                    "no such model folder")
            self.assertOneLineError(run("info", "--model", d, check=False), "config.json", "no such file")
            bad_ids = os.path.join(d, "ids.txt")
            with open(bad_ids, "w") as f:
                f.write("1 2 three")
            self.assertOneLineError(run("logits", "--model", os.path.join(FIX, "nope_mha_f32"), "--ids-file", bad_ids,
                                        "--out", os.path.join(d, "o"), check=False), "ids.txt", "three")
            self.assertOneLineError(run("generate", "--model", os.path.join(FIX, "nope_mha_f32"), "--ids", "1 99999",
                                        check=False), "99999", "vocabulary")
            self.assertOneLineError(run("generate", "--model", os.path.join(FIX, "nope_mha_f32"), "--ids", "1 2",
                                        "--top-p", "0", check=False), "top_p")


if __name__ == "__main__":
    unittest.main()
