#!/usr/bin/env python3
"""Writes the King James Bible as plain UTF-8 text, one verse per line, from Debian's bible-kjv package.

    python3 tools/extract_kjv.py OUT.txt

Chapters start with a heading line ("Genesis 1") after a blank line; verse numbers are dropped. Needs the `bible`
program (Debian packages bible-kjv and bible-kjv-text; scripts/setup.sh installs them).
"""
import re
import shutil
import subprocess
import sys


def kjv_text():
    exe = shutil.which("bible")
    if exe is None:
        sys.exit("extract_kjv: the `bible` program is missing: apt-get install bible-kjv bible-kjv-text")
    raw = subprocess.run([exe, "Genesis 1:1-Revelation 22:21"], check=True, capture_output=True, text=True).stdout
    out, verse = [], None
    verse_start = re.compile(r"^\s+\d+ (.*)$")
    for line in raw.splitlines():
        m = verse_start.match(line)
        if m:
            if verse is not None:
                out.append(verse)
            verse = m.group(1).strip()
        elif not line.strip():
            continue
        elif re.match(r"^[1-3]?\s?[A-Z][A-Za-z ]+ \d+$", line) and not line.startswith(" "):
            if verse is not None:
                out.append(verse)
                verse = None
            out.append("")
            out.append(line.strip())
        else:
            verse = (verse + " " + line.strip()) if verse is not None else line.strip()
    if verse is not None:
        out.append(verse)
    return "\n".join(out).lstrip("\n") + "\n"


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    text = kjv_text()
    with open(sys.argv[1], "w", encoding="utf-8") as f:
        f.write(text)
    print(f"extract_kjv: {len(text)} characters, {text.count(chr(10))} lines -> {sys.argv[1]}")
