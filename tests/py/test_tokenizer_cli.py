"""The tokenize / detokenize commands as users and outside checks call them: output format, --model folders,
--json, ids from --ids, --ids-file and stdin, streaming, and one-line errors."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import tok_helpers as th  # noqa: E402


def hyrax(args, stdin=None):
    return subprocess.run([th.HYRAX_BIN] + args, input=stdin, capture_output=True, text=True)


class TokenizeCli(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        from tokenizers import Tokenizer
        cls.tok_json = th.trained_tokenizer("cl100k")
        cls.hf = Tokenizer.from_file(cls.tok_json)
        cls.dir = tempfile.mkdtemp()
        cls.model = os.path.join(cls.dir, "model")
        os.makedirs(cls.model)
        shutil.copy(cls.tok_json, os.path.join(cls.model, "tokenizer.json"))
        with open(os.path.join(cls.model, "tokenizer_config.json"), "w") as f:
            json.dump({"bos_token": "<|endoftext|>", "eos_token": {"content": "<|im_end|>"},
                       "chat_template": "{{ messages }}"}, f)
        cls.text = "In the beginning God created the heaven and the earth.\n\nAnd it's 1611: <|im_start|> ok"
        cls.text_file = os.path.join(cls.dir, "text.txt")
        with open(cls.text_file, "w", encoding="utf-8") as f:
            f.write(cls.text)
        cls.expected = cls.hf.encode(cls.text, add_special_tokens=False).ids

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dir)

    def test_ids_on_one_line(self):
        for src in (["--tokenizer", self.tok_json], ["--model", self.model]):
            r = hyrax(["tokenize"] + src + ["--text-file", self.text_file])
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(r.stdout, " ".join(map(str, self.expected)) + "\n")

    def test_json_array(self):
        r = hyrax(["tokenize", "--model", self.model, "--text-file", self.text_file, "--json"])
        self.assertEqual(json.loads(r.stdout), self.expected)

    def test_stdin_text(self):
        r = hyrax(["tokenize", "--tokenizer", self.tok_json], stdin=self.text)
        self.assertEqual(r.stdout.split(), [str(i) for i in self.expected])

    def test_detokenize_inverse(self):
        ids = " ".join(map(str, self.expected))
        for how, stdin in ((["--ids", ids], None), (["--ids", ",".join(ids.split())], None), ([], ids),
                           ([], json.dumps(self.expected))):
            r = hyrax(["detokenize", "--model", self.model] + how, stdin=stdin)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(r.stdout, self.text)
        ids_file = os.path.join(self.dir, "ids.txt")
        with open(ids_file, "w") as f:
            f.write(ids + "\n")
        r = hyrax(["detokenize", "--tokenizer", self.tok_json, "--ids-file", ids_file, "--stream"])
        self.assertEqual(r.stdout, self.text)
        r = hyrax(["detokenize", "--tokenizer", self.tok_json, "--ids-file", ids_file, "--skip-special"])
        self.assertEqual(r.stdout, self.hf.decode(self.expected, skip_special_tokens=True))

    def test_errors_are_one_line(self):
        r = hyrax(["tokenize", "--tokenizer", os.path.join(self.dir, "missing.json"), "--text", "x"])
        self.assertEqual(r.returncode, 1)
        self.assertIn("missing.json", r.stderr)
        self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)
        bad = os.path.join(self.dir, "bad.json")
        with open(bad, "w") as f:
            json.dump({"model": {"type": "WordPiece", "vocab": {}}}, f)
        r = hyrax(["tokenize", "--tokenizer", bad, "--text", "x"])
        self.assertEqual(r.returncode, 1)
        self.assertIn("WordPiece", r.stderr)
        r = hyrax(["detokenize", "--tokenizer", self.tok_json, "--ids", "1 two 3"])
        self.assertEqual(r.returncode, 1)
        self.assertIn("two", r.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
