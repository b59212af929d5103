"""Shared pieces of the tokenizer tests: the KJV text, generated stress strings, the tokenizers the suite trains
itself with HF `tokenizers`, rank files for `tiktoken`, and running `hyrax tokenize/detokenize` over a batch."""
import base64
import json
import os
import random
import subprocess
import sys
import tempfile

SOURCE_DIR = os.environ.get("HYRAX_SOURCE_DIR", os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
HYRAX_BIN = os.environ.get("HYRAX_BIN", os.path.join(SOURCE_DIR, "build", "hyrax"))
# Everything derived (KJV text, trained tokenizers) is cached beside the binary, in the git-ignored build folder;
# bump the version when a recipe below changes so that stale caches are not reused.
CACHE_DIR = os.path.join(os.path.dirname(os.path.abspath(HYRAX_BIN)), "tokenizer-test-data", "v2")
DOLMA2 = os.path.join(SOURCE_DIR, "..", "shared", "tokenizers", "dolma2", "tokenizer.json")

sys.path.insert(0, os.path.join(SOURCE_DIR, "tools", "tokenizer"))
import extract_kjv  # noqa: E402

CL100K = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
          r"|\s+(?!\S)|\s+")
O200K = "|".join([
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
    r"\p{N}{1,3}", r" ?[^\s\p{L}\p{N}]+[\r\n/]*", r"\s*[\r\n]+", r"\s+(?!\S)", r"\s+"])

# dolma2's added tokens (id offset from the end of the trained vocabulary, content, special).
DOLMA2_ADDED = [("<|extra_id_0|>", False), ("<|endoftext|>", True), ("<|fim_prefix|>", True),
                ("<|fim_middle|>", True), ("<|fim_suffix|>", True), ("|||PHONE_NUMBER|||", False),
                ("|||EMAIL_ADDRESS|||", False), ("|||IP_ADDRESS|||", False), ("<|im_start|>", True),
                ("<|im_end|>", True)] + [(f"<|extra_id_{i}|>", False) for i in range(1, 11)] + \
               [("<|endofprompt|>", True), ("<|pad|>", True)]
# Added tokens that exercise HF's flags (used by the o200k-regex tokenizer).
FLAGGED_ADDED = [
    dict(content="<mask>", special=True, lstrip=True, rstrip=False, single_word=False, normalized=False),
    dict(content="[SEP]", special=True, lstrip=False, rstrip=True, single_word=False, normalized=False),
    dict(content="<both>", special=False, lstrip=True, rstrip=True, single_word=False, normalized=True),
    dict(content="amen", special=False, lstrip=False, rstrip=False, single_word=True, normalized=True),
    dict(content="<|endoftext|>", special=True, lstrip=False, rstrip=False, single_word=False, normalized=False),
    dict(content="<|end", special=False, lstrip=False, rstrip=False, single_word=False, normalized=False),
    dict(content="ſword", special=False, lstrip=False, rstrip=False, single_word=True, normalized=False),
]


def kjv_path() -> str:
    return extract_kjv.extract(os.path.join(CACHE_DIR, "kjv.txt"))


def kjv_text() -> str:
    with open(kjv_path(), encoding="utf-8") as f:
        return f.read()


def _save(tok, path):
    tmp = f"{path}.{os.getpid()}.tmp"  # tests run in parallel: each writer its own file, then an atomic rename
    tok.save(tmp)
    os.replace(tmp, path)
    return path


def trained_tokenizer(kind: str) -> str:
    """Path of a tokenizer.json trained on the KJV with HF tokenizers (cached): kind is "cl100k" (cl100k's
    regex, dolma2's added tokens), "o200k" (o200k's regex, flag-exercising added tokens) or "gpt2" (plain
    ByteLevel with its own regex and a prefix space, ignore_merges)."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    os.makedirs(CACHE_DIR, exist_ok=True)
    path = os.path.join(CACHE_DIR, f"kjv-{kind}.json")
    if os.path.exists(path):
        return path
    tok = Tokenizer(models.BPE(ignore_merges=(kind == "gpt2")))
    if kind == "gpt2":
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=True)
    else:
        regex = CL100K if kind == "cl100k" else O200K
        behavior = "removed" if kind == "cl100k" else "isolated"
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(regex), behavior=behavior, invert=(kind == "cl100k")),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=6000, min_frequency=2, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    # A little non-Latin text so that some merges cover multi-byte characters.
    extra = ["ἐν ἀρχῇ ἦν ὁ λόγος", "В начале было Слово", "太初有道，道与神同在", "בְּרֵאשִׁית בָּרָא אֱלֹהִים",
             "في البدء كان الكلمة", "はじめに言があった", "태초에 말씀이 계시니라", "😀👍🏽👨‍👩‍👧‍👦"] * 50
    tok.train_from_iterator([kjv_text()] + extra, trainer=trainer)
    if kind == "cl100k":
        tok.add_tokens([AddedToken(c, special=s, normalized=False) for c, s in DOLMA2_ADDED])
    elif kind == "o200k":
        tok.add_tokens([AddedToken(**a) for a in FLAGGED_ADDED])
    else:  # a BOS through the post-processor, as Llama 3's tokenizer.json has it
        from tokenizers import processors
        tok.add_special_tokens(["<|begin_of_text|>"])
        bos = tok.token_to_id("<|begin_of_text|>")
        tok.post_processor = processors.TemplateProcessing(
            single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A $B", special_tokens=[("<|begin_of_text|>", bos)])
    return _save(tok, path)


def behaviours_tokenizer() -> str:
    """The cl100k-trained vocabulary under a pre-tokenizer that uses the other Split behaviours and a literal
    pattern, ending in a ByteLevel step with GPT-2's regex and a prefix space."""
    path = os.path.join(CACHE_DIR, "kjv-behaviours.json")
    if os.path.exists(path):
        return path
    with open(trained_tokenizer("cl100k"), encoding="utf-8") as f:
        j = json.load(f)
    j["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"String": "\n"}, "behavior": "MergedWithPrevious", "invert": False},
        {"type": "Split", "pattern": {"Regex": r"\p{N}+"}, "behavior": "MergedWithNext", "invert": False},
        {"type": "Split", "pattern": {"Regex": r"[.,;:]"}, "behavior": "Contiguous", "invert": False},
        {"type": "Split", "pattern": {"Regex": r"x*"}, "behavior": "Isolated", "invert": False},
        {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True}]}
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(j, f, ensure_ascii=False)
    os.replace(tmp, path)
    return path


QWEN2 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
         r"|\s+(?!\S)|\s+")


def nfc_tokenizer() -> str:
    """The cl100k-trained vocabulary as Qwen2/Qwen3 tokenizers are set up: an NFC normalizer, Qwen's regex (single
    digits) with Isolated, ByteLevel; plus a normalized added token whose content is not in NFC."""
    path = os.path.join(CACHE_DIR, "kjv-nfc.json")
    if os.path.exists(path):
        return path
    with open(trained_tokenizer("cl100k"), encoding="utf-8") as f:
        j = json.load(f)
    j["normalizer"] = {"type": "NFC"}
    j["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": QWEN2}, "behavior": "Isolated", "invert": False},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}]}
    next_id = max(a["id"] for a in j["added_tokens"]) + 1
    j["added_tokens"].append({"id": next_id, "content": "Ame\u0301n", "single_word": False, "lstrip": False,
                              "rstrip": False, "normalized": True, "special": False})
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(j, f, ensure_ascii=False)
    os.replace(tmp, path)
    return path


def tiktoken_ranks(tokenizer_json: str, out_path: str) -> dict:
    """Writes a .tiktoken rank file with the byte-level vocabulary of tokenizer_json (rank = id) and returns the
    ranks as {bytes: rank}, as tiktoken.Encoding takes them."""
    with open(tokenizer_json, encoding="utf-8") as f:
        j = json.load(f)
    byte_of = {}
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    char_to_byte = {chr(c): b for b, c in zip(bs, cs)}
    ranks = {}
    for s, i in j["model"]["vocab"].items():
        ranks[bytes(char_to_byte[c] for c in s)] = i
    tmp = f"{out_path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="ascii") as f:
        for b, i in sorted(ranks.items(), key=lambda kv: kv[1]):
            f.write(base64.b64encode(b).decode() + " " + str(i) + "\n")
    os.replace(tmp, out_path)
    return ranks


# ---------------------------------------------------------------------------------------------------------------
# Stress strings

def _pieces():
    contractions = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'T", "'RE", "'Re", "'rE", "'VE", "'M",
                    "'LL", "'Ll", "'D", "'ſ", "'K", "'x", "''", "'", "' s", "don't", "DON'T", "I'M", "she'S",
                    "y'all", "rock'n'roll", "it’s", "O'Neil'S", "'twas"]
    scripts = ["hello", "World", "ÀÉÎÕÜ", "straße", "ǅemal", "ǈ", "ʰʲʷ", "Ελληνικά", "ΣΊΣΥΦΟΣ", "Кириллица",
               "ԱԲԳ", "עברית", "العربية", "हिन्दी", "বাংলা", "ไทยภาษา", "ქართული", "한국어", "ひらがな", "カタカナ",
               "中文字符", "日本語の", "ኢትዮጵያ", "ᏣᎳᎩ", "ᠮᠣᠩᠭᠣᠯ", "བོད་ཡིག", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "𐐀𐐨", "ꓚꓰ",
               "ΑΒΓαβγ", "İstanbul", "ıi", "ﬁﬂ", "Ⅻⅻ", "Ꜳꜳ", "ǲ", "ᾈᾼ", "ⓐⒶ", "ᵃᵇ", "ᴬᴮ", "ſ", "ꞵ"]
    digits = ["0", "7", "42", "123", "1234", "12345", "1234567", "3.14159", "1,000,000", "٣٤٥", "५६", "３４５",
              "²³", "½¾", "①②", "𝟙𝟚", "12ab34", "x1y22z333", "000000000001"]
    spaces = [" ", "  ", "   ", "\t", "\t\t", "\n", "\n\n", "\r\n", "\r", "\r\n\r\n", " \n", "\n ", " \n ",
              "\u00a0", "\u2003", "\u3000", "\u2028", "\u2029", "\u0085", "\u000b", "\u000c", "\u1680", "\u200b",
              "\u202f", "\u205f", " \u00a0 ", "\t\n\t", "\u00a0\u00a0"]
    emoji = ["👍", "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "❤️", "🇺🇸", "1️⃣", "🧑🏿‍🚀", "😀😃😄", "🀄", "☕", "✌🏻"]
    marks = ["e\u0301", "\u0301", "a\u0308\u0323", "Z\u0335\u0321\u0328a\u0336l\u0337g\u0338o", "\u20dd",
             "क्षि", "\u0e31", "\u093f", "\u0488", "n\u0303o\u0303", "A\u030a", "\u212b", "\u2126", "\u0387",
             "\u1100\u1161\u11a8", "\uac00\u11a8", "q\u0307\u0323", "\u0958", "\u1e0a\u0323", "Ame\u0301n"]
    punct = ["!", "?!", "...", "—", "–", "-", "_", "__init__", "‿", "«»", "“quoted”", "(", ")", "[]", "{}", "#", "@",
             "$", "€", "£", "%", "^", "&", "*", "+", "=", "<", ">", "/", "\\", "|", "~", "`", "©", "®", "™", "∑",
             "∞", "≠", "→", "·", "•", "§", "¶", "¿", "¡", "\u00ad", "\ufeff", "\u200d", "\u200c", "\u200e",
             "\ue000", "\u0378", "\U000e0001", "\U0010fffd", "/*", "*/", "//", "\\n", "<|", "|>", "http://x.y/z?a=1"]
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|endoftext", "<|endoftext|>|>", "<|im_start|><|im_end|>",
                "<|pad|>", "|||PHONE_NUMBER|||", "<|extra_id_10|>", "<|extra_id_1|>0", "<mask>", " <mask>",
                "  <mask>", "[SEP]", "[SEP]  ", "<both>", " \t<both>\n ", "amen", " amen ", "amens", "xamen",
                "_amen", "ſword", "<|end"]
    words = ["the", " the", "The", " and", "LORD", "unto", "thee", " I", "a", "of", "In the beginning", "God",
             "saith", "verily", "Amen.", "  1 ", "Genesis 1:1", "re", "ve", "ll"]
    return dict(contractions=contractions, scripts=scripts, digits=digits, spaces=spaces, emoji=emoji, marks=marks,
                punct=punct, specials=specials, words=words)


def _random_char(rng):
    while True:
        c = rng.randrange(0x110000) if rng.random() < 0.5 else rng.randrange(0x3000)
        if not 0xD800 <= c <= 0xDFFF:
            return chr(c)


def stress_strings(n: int = 3200, seed: int = 1234) -> list:
    """n deterministic strings that stress the pre-tokenizer regexes and added-token matching."""
    rng = random.Random(seed)
    p = _pieces()
    out = []
    for cat in p.values():  # every piece alone, and padded by spaces
        for s in cat:
            out += [s, " " + s, s + " ", "x" + s + "y"]
    cats = list(p.keys())
    while len(out) < n:
        k = rng.randint(1, 14)
        parts = []
        for _ in range(k):
            r = rng.random()
            if r < 0.08:
                parts.append("".join(_random_char(rng) for _ in range(rng.randint(1, 6))))
            elif r < 0.12:
                parts.append(rng.choice(p["spaces"]) * rng.randint(2, 40))
            else:
                parts.append(rng.choice(p[rng.choice(cats)]))
        out.append("".join(parts))
    out += ["", " ", "\n" * 50, " " * 300, "a" * 500, "1" * 200, "\t \n" * 30, "'" * 30]
    return out


def invalid_utf8_strings(seed: int = 99) -> list:
    """Byte strings with ill-formed UTF-8 (as lists of ints)."""
    rng = random.Random(seed)
    bad = [b"\xff", b"\xc0\xaf", b"\xe2\x82", b"\xf0\x9f\x98", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\x80",
           b"\xbf\xbf", b"\xc3", b"\xe0\x80\x80", b"\xf8\x88\x80\x80\x80", b"\xfe\xfe", b"\xc2\x41", b"\xe2\x28\xa1"]
    good = ["hello", " world", "中文", "👍🏽", " <|endoftext|> ", "\n", "'s", "123"]
    out = [list(b) for b in bad]
    for _ in range(200):
        parts = []
        for _ in range(rng.randint(1, 6)):
            parts.append(rng.choice(bad) if rng.random() < 0.5 else rng.choice(good).encode())
        out.append(list(b"".join(parts)))
    return out


# ---------------------------------------------------------------------------------------------------------------
# Running hyrax

def run_hyrax(args, input_text=None, binary=False):
    r = subprocess.run([HYRAX_BIN] + args, input=input_text, capture_output=True, text=not binary)
    if r.returncode != 0:
        raise AssertionError(f"hyrax {' '.join(args)} failed ({r.returncode}): {r.stderr}")
    return r.stdout


def hyrax_encode_batch(tokenizer_args, texts, extra=()):
    """Ids of each text (str, or list of byte values) from one `hyrax tokenize --jsonl` run."""
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False, encoding="utf-8") as f:
        for t in texts:
            f.write(json.dumps(t if isinstance(t, str) else {"bytes": t}) + "\n")
        name = f.name
    try:
        out = run_hyrax(["tokenize"] + tokenizer_args + ["--jsonl", name] + list(extra))
    finally:
        os.unlink(name)
    lines = out.split("\n")[:-1]  # not splitlines(): U+2028 and U+0085 are not line ends here
    assert len(lines) == len(texts), f"{len(lines)} output lines for {len(texts)} texts"
    return [json.loads(x) for x in lines]


def hyrax_decode_batch(tokenizer_args, id_lists, extra=()):
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False, encoding="utf-8") as f:
        for ids in id_lists:
            f.write(json.dumps(ids) + "\n")
        name = f.name
    try:
        out = run_hyrax(["detokenize"] + tokenizer_args + ["--jsonl", name] + list(extra))
    finally:
        os.unlink(name)
    lines = out.split("\n")[:-1]  # not splitlines(): U+2028 and U+0085 are not line ends here
    assert len(lines) == len(id_lists)
    return [json.loads(x) for x in lines]
