"""Exactness of hyrax's tokenizer against HF `tokenizers` and `tiktoken` (the pinned reference packages).

For every tokenizer under test: >= 3,000 generated stress strings, the whole KJV text, ill-formed UTF-8, special
tokens allowed and disallowed, decoding (with and without special tokens, broken byte sequences) and streaming
decoding. Tokenizers: dolma2 from ../shared (skipped where absent), and tokenizers trained here on the KJV with HF
tokenizers (cl100k regex + dolma2's added tokens; o200k regex + added tokens with lstrip/rstrip/single_word; plain
ByteLevel with GPT-2's regex and a prefix space; the other Split behaviours). tiktoken rank files derived from them
are checked against the tiktoken package.
"""
import json
import os
import random
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import tok_helpers as th  # noqa: E402


def first_mismatches(texts, expected, got, limit=5):
    bad = [(t, e, g) for t, e, g in zip(texts, expected, got) if e != g]
    lines = [f"{len(bad)} of {len(texts)} differ"]
    for t, e, g in bad[:limit]:
        lines.append(f"  text={t!r}\n    hf   ={e}\n    hyrax={g}")
    return bad, "\n".join(lines)


class TokenizerExactness:
    """Checks one tokenizer.json; subclasses set `path()` and optionally `hyrax_extra`."""
    hyrax_extra = []
    check_decode = True
    lossless = False

    @classmethod
    def setUpClass(cls):
        from tokenizers import Tokenizer
        cls.tok_path = cls.path()
        cls.hf = Tokenizer.from_file(cls.tok_path)
        cls.args = ["--tokenizer", cls.tok_path] + cls.hyrax_extra

    def hf_encode(self, texts, allow_special=True):
        self.hf.encode_special_tokens = not allow_special
        try:
            return [e.ids for e in self.hf.encode_batch(texts, add_special_tokens=False)]
        finally:
            self.hf.encode_special_tokens = False

    def test_stress_strings(self):
        texts = th.stress_strings()
        self.assertGreaterEqual(len(texts), 3000)
        bad, msg = first_mismatches(texts, self.hf_encode(texts), th.hyrax_encode_batch(self.args, texts))
        self.assertEqual(len(bad), 0, msg)

    def test_special_tokens_disallowed(self):
        texts = [t for t in th.stress_strings() if "<" in t or "[" in t or "|||" in t]
        got = th.hyrax_encode_batch(self.args, texts, ["--no-special"])
        bad, msg = first_mismatches(texts, self.hf_encode(texts, allow_special=False), got)
        self.assertEqual(len(bad), 0, msg)

    def test_add_special_tokens(self):
        texts = th.stress_strings()[:300]
        expected = [e.ids for e in self.hf.encode_batch(texts, add_special_tokens=True)]
        bad, msg = first_mismatches(texts, expected,
                                    th.hyrax_encode_batch(self.args, texts, ["--add-special-tokens"]))
        self.assertEqual(len(bad), 0, msg)

    def test_kjv(self):
        text = th.kjv_text()
        expected = self.hf.encode(text, add_special_tokens=False).ids
        got = [int(x) for x in th.run_hyrax(["tokenize"] + self.args + ["--text-file", th.kjv_path()]).split()]
        self.assertEqual(len(got), len(expected))
        self.assertTrue(got == expected, "KJV ids differ")

    def test_invalid_utf8(self):
        blobs = th.invalid_utf8_strings()
        expected = self.hf_encode([bytes(b).decode("utf-8", errors="replace") for b in blobs])
        bad, msg = first_mismatches([bytes(b) for b in blobs], expected, th.hyrax_encode_batch(self.args, blobs))
        self.assertEqual(len(bad), 0, msg)

    def random_id_lists(self, n=400, seed=7):
        rng = random.Random(seed)
        size = self.hf.get_vocab_size(with_added_tokens=True)
        added = [a for a in self.hf.get_added_tokens_decoder()]
        lists = []
        for _ in range(n):
            ids = []
            for _ in range(rng.randint(0, 30)):
                r = rng.random()
                ids.append(rng.choice(added) if added and r < 0.1 else rng.randrange(0, min(size, 400)) if r < 0.5
                           else rng.randrange(0, size))
            lists.append(ids)
        return lists

    def test_decode(self):
        if not self.check_decode:
            self.skipTest("decode checked with the native engine")
        lists = self.random_id_lists()
        for skip in (False, True):
            expected = [self.hf.decode(ids, skip_special_tokens=skip) for ids in lists]
            got = th.hyrax_decode_batch(self.args, lists, ["--skip-special"] if skip else [])
            bad, msg = first_mismatches(lists, expected, got)
            self.assertEqual(len(bad), 0, msg)

    def test_round_trip(self):
        if not self.check_decode:
            self.skipTest("decode checked with the native engine")
        texts = th.stress_strings()[:1500]
        ids = th.hyrax_encode_batch(self.args, texts)
        back = th.hyrax_decode_batch(self.args, ids)
        bad, msg = first_mismatches(ids, [self.hf.decode(i, skip_special_tokens=False) for i in ids], back)
        self.assertEqual(len(bad), 0, msg)
        if self.lossless:  # no prefix space, no stripping tokens: text -> ids -> text is the identity
            bad, msg = first_mismatches(ids, texts, back)
            self.assertEqual(len(bad), 0, msg)

    def test_streaming_decode(self):
        if not self.check_decode:
            self.skipTest("decode checked with the native engine")
        lists = self.random_id_lists(seed=8) + th.hyrax_encode_batch(self.args, th.stress_strings()[:300])
        chunks = th.hyrax_decode_batch(self.args, lists, ["--stream"])
        for ids, parts in zip(lists, chunks):
            expected = self.hf.decode(ids, skip_special_tokens=False)
            self.assertEqual("".join(parts), expected, f"ids={ids}")
            # Every chunk came back as a JSON string, so it is well-formed; a U+FFFD may only appear where the
            # whole decode has it too (held-back bytes are never cut into replacement characters early).
            self.assertEqual("".join(parts).count("\ufffd"), expected.count("\ufffd"))
            self.assertEqual(len(parts), len(ids) + 1)


class Dolma2(TokenizerExactness, unittest.TestCase):
    lossless = True

    @staticmethod
    def path():
        if not os.path.exists(th.DOLMA2):
            raise unittest.SkipTest(f"{th.DOLMA2} is absent")
        return th.DOLMA2


class Dolma2Pcre2(TokenizerExactness, unittest.TestCase):
    """The same tokenizer with its regex on PCRE2 instead of the native cl100k matcher."""
    hyrax_extra = ["--regex-engine", "pcre2"]
    check_decode = False

    @staticmethod
    def path():
        return Dolma2.path()


class KjvCl100k(TokenizerExactness, unittest.TestCase):
    lossless = True

    @staticmethod
    def path():
        return th.trained_tokenizer("cl100k")


class KjvCl100kPcre2(TokenizerExactness, unittest.TestCase):
    hyrax_extra = ["--regex-engine", "pcre2"]
    check_decode = False

    @staticmethod
    def path():
        return th.trained_tokenizer("cl100k")


class KjvO200k(TokenizerExactness, unittest.TestCase):
    @staticmethod
    def path():
        return th.trained_tokenizer("o200k")


class KjvO200kPcre2(TokenizerExactness, unittest.TestCase):
    hyrax_extra = ["--regex-engine", "pcre2"]
    check_decode = False

    @staticmethod
    def path():
        return th.trained_tokenizer("o200k")


class KjvGpt2(TokenizerExactness, unittest.TestCase):
    @staticmethod
    def path():
        return th.trained_tokenizer("gpt2")


class KjvSplitBehaviours(TokenizerExactness, unittest.TestCase):
    @staticmethod
    def path():
        return th.behaviours_tokenizer()


class KjvNfcQwenStyle(TokenizerExactness, unittest.TestCase):
    """An NFC normalizer and Qwen2's regex (single digits), as Qwen2 / Qwen3 tokenizers have them."""

    @staticmethod
    def path():
        return th.nfc_tokenizer()


class TiktokenRanks(unittest.TestCase):
    """.tiktoken rank files derived from byte-level tokenizer.json files, against the tiktoken package."""

    def check(self, tokenizer_json, pattern_name, pattern, specials, name):
        import tiktoken
        rank_path = os.path.join(th.CACHE_DIR, name + ".tiktoken")
        ranks = th.tiktoken_ranks(tokenizer_json, rank_path)
        enc = tiktoken.Encoding(name, pat_str=pattern, mergeable_ranks=ranks, special_tokens=specials)
        args = ["--tokenizer", rank_path, "--tiktoken-pattern", pattern_name, "--special-tokens", json.dumps(specials)]
        texts = th.stress_strings()
        expected = [enc.encode(t, allowed_special="all") for t in texts]
        bad, msg = first_mismatches(texts, expected, th.hyrax_encode_batch(args, texts))
        self.assertEqual(len(bad), 0, msg)
        kjv = th.kjv_text()
        got = [int(x) for x in th.run_hyrax(["tokenize"] + args + ["--text-file", th.kjv_path()]).split()]
        self.assertTrue(got == enc.encode_ordinary(kjv), "KJV ids differ")
        lists = [enc.encode(t, allowed_special="all") for t in texts[:500]]
        back = th.hyrax_decode_batch(args, lists)
        self.assertEqual(back, [enc.decode(ids) for ids in lists])

    def test_dolma2_ranks(self):
        if not os.path.exists(th.DOLMA2):
            self.skipTest(f"{th.DOLMA2} is absent")
        self.check(th.DOLMA2, "cl100k", th.CL100K, {"<|endoftext|>": 100257, "<|im_start|>": 100264,
                                                    "<|im_end|>": 100265}, "dolma2")

    def test_trained_cl100k_ranks(self):
        path = th.trained_tokenizer("cl100k")
        with open(path, encoding="utf-8") as f:
            n = len(json.load(f)["model"]["vocab"])
        self.check(path, "cl100k", th.CL100K, {"<|endoftext|>": n, "<|im_start|>": n + 1}, "kjv-cl100k")

    def test_trained_o200k_ranks(self):
        path = th.trained_tokenizer("o200k")
        with open(path, encoding="utf-8") as f:
            n = len(json.load(f)["model"]["vocab"])
        self.check(path, "o200k", th.O200K, {"<|endoftext|>": n}, "kjv-o200k")


if __name__ == "__main__":
    unittest.main(verbosity=2)
