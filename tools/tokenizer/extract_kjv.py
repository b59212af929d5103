#!/usr/bin/env python3
"""Extracts the whole King James Bible as UTF-8 text with Debian's `bible` program (packages bible-kjv and
bible-kjv-text, installed by scripts/setup.sh). The output is deterministic: the line width is pinned.

Usage: python extract_kjv.py OUT.txt
"""
import os
import shutil
import subprocess
import sys

VERSES = "Genesis1:1-Revelation22:21"


def extract(out_path: str) -> str:
    """Writes the text to out_path (atomically) unless it is already there; returns out_path."""
    if os.path.exists(out_path) and os.path.getsize(out_path) > 4_000_000:
        return out_path
    exe = shutil.which("bible")
    if exe is None:
        raise RuntimeError("the `bible` program is missing: apt-get install bible-kjv bible-kjv-text "
                           "(scripts/setup.sh does it)")
    env = dict(os.environ, COLUMNS="80")
    text = subprocess.run([exe, "-l80", VERSES], check=True, capture_output=True, env=env).stdout
    if len(text) < 4_000_000 or not text.rstrip().endswith(b"Amen."):
        raise RuntimeError(f"`bible` printed {len(text)} bytes, not the whole KJV text")
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    tmp = f"{out_path}.{os.getpid()}.tmp"
    with open(tmp, "wb") as f:
        f.write(text)
    os.replace(tmp, out_path)
    return out_path


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    print(extract(sys.argv[1]))
