#!/usr/bin/env python3
"""Single-thread encode throughput on the KJV text: hyrax vs HF tokenizers vs tiktoken, same machine, same run.

The tokenizer is dolma2 (cl100k ranks) from ../shared, or the suite's KJV-trained cl100k-regex tokenizer where
../shared is absent. tiktoken runs the same ranks (a .tiktoken file derived from the tokenizer.json) with the
same regex. Each figure is the best of --repeat runs over the whole text (4.3 MB).

Usage: HYRAX_BIN=build/hyrax .venv/bin/python bench/tokenizer/bench_encode.py [--repeat 5]
"""
import argparse
import os
import platform
import re
import subprocess
import sys
import time

os.environ["RAYON_NUM_THREADS"] = "1"  # HF tokenizers: one thread
os.environ["TOKENIZERS_PARALLELISM"] = "false"
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tests", "py"))
import tok_helpers as th  # noqa: E402


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def best_of(fn, repeat):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args()
    import tiktoken
    import tokenizers

    path = th.DOLMA2 if os.path.exists(th.DOLMA2) else th.trained_tokenizer("cl100k")
    name = "dolma2" if path == th.DOLMA2 else "kjv-cl100k"
    text = th.kjv_text()
    nbytes = len(text.encode())

    hf = tokenizers.Tokenizer.from_file(path)
    n_hf = len(hf.encode(text, add_special_tokens=False).ids)
    t_hf = best_of(lambda: hf.encode(text, add_special_tokens=False), a.repeat)

    ranks = th.tiktoken_ranks(path, os.path.join(th.CACHE_DIR, name + "-bench.tiktoken"))
    enc = tiktoken.Encoding(name, pat_str=th.CL100K, mergeable_ranks=ranks, special_tokens={})
    n_tt = len(enc.encode_ordinary(text))
    t_tt = best_of(lambda: enc.encode_ordinary(text), a.repeat)

    # hyrax times its own encode loop (the file read and tokenizer load are outside the timing).
    out = subprocess.run([th.HYRAX_BIN, "tokenize", "--tokenizer", path, "--text-file", th.kjv_path(),
                          "--bench", str(a.repeat)], capture_output=True, text=True, check=True).stderr
    m = re.search(r"-> (\d+) tokens, \d+ runs, ([0-9.]+) s/run", out)
    n_hx, t_hx = int(m.group(1)), float(m.group(2))
    t_hx_cold = float(re.search(r"first encode \(cold piece cache\): ([0-9.]+) s", out).group(1))

    # HF tokenizers is much slower on one 4 MB string than on short texts; give it its best case too: the text
    # line by line through encode_batch (still one thread). Its tokens differ slightly at line ends.
    lines = text.splitlines(keepends=True)
    t_hf_lines = best_of(lambda: hf.encode_batch(lines, add_special_tokens=False), a.repeat)
    t_tt_lines = best_of(lambda: enc.encode_ordinary_batch(lines, num_threads=1), a.repeat)

    print(f"# encode throughput, KJV ({nbytes / 1e6:.2f} MB, {n_hf} tokens), tokenizer {name}, one thread")
    print(f"# {time.strftime('%Y-%m-%d')}  CPU: {cpu_name()}  tokenizers {tokenizers.__version__}  "
          f"tiktoken {tiktoken.__version__}")
    assert n_hx == n_hf == n_tt, (n_hx, n_hf, n_tt)
    rows = [("hyrax", t_hx), ("hyrax, cold", t_hx_cold), ("HF tokenizers", t_hf),
            ("HF, by line", t_hf_lines), ("tiktoken", t_tt), ("tiktoken, by line", t_tt_lines)]
    print(f"| {'encoder':<18} | {'s':>7} | {'MB/s':>7} | {'Mtok/s':>7} | {'vs HF':>6} |")
    print(f"|{'-' * 20}|{'-' * 9}|{'-' * 9}|{'-' * 9}|{'-' * 8}|")
    for label, t in rows:
        print(f"| {label:<18} | {t:7.3f} | {nbytes / t / 1e6:7.2f} | {n_hf / t / 1e6:7.3f} | {t_hf / t:5.2f}x |")


if __name__ == "__main__":
    main()
