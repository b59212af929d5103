#!/usr/bin/env python3
"""Where a step's GPU time goes: runs a hyrax command under Nsight Compute (kernel durations only, clocks left
alone), finds the repeating decode step at the end of the kernel stream, and prints the time per kernel name for
one decode step and for everything before the decode steps (load + prefill).

    scripts/profile_step.py [--top N] -- .gpu/hyrax bench --config configs/olmo-hybrid-7b.json --dummy-weights \
        --device cuda --prompt-len 64 --decode 2 --batch 1

Needs ncu on the PATH (the GPU machine has it). Durations under ncu are each kernel run alone (serialized, caches
flushed off), so the sum is the GPU's busy time without launch gaps, not the step's wall time.
"""
import argparse
import collections
import csv
import io
import subprocess
import sys


def run_ncu(cmd):
    ncu = ["ncu", "--clock-control", "none", "--cache-control", "none", "--metrics", "gpu__time_duration.sum",
           "--csv", "--page", "raw"]
    p = subprocess.run(ncu + cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.stderr.write(p.stderr[-4000:])
        sys.exit(f"ncu exited with {p.returncode}")
    lines = p.stdout.splitlines()
    start = next(i for i, l in enumerate(lines) if l.startswith('"ID"'))
    rows = list(csv.DictReader(io.StringIO("\n".join(lines[start:]))))
    kernels = []
    for r in rows:
        t = r.get("gpu__time_duration.sum", "")
        try:
            ns = float(t.replace(",", ""))
        except ValueError:
            continue  # the units row
        kernels.append((r["Kernel Name"], r.get("Grid Size", ""), ns))
    return kernels, p.stdout


def short(name):
    name = name.split("(")[0]
    return name if len(name) < 70 else name[:67] + "..."


def table(title, ks, top):
    total = sum(k[2] for k in ks)
    agg = collections.defaultdict(lambda: [0, 0.0])
    for name, _, ns in ks:
        agg[short(name)][0] += 1
        agg[short(name)][1] += ns
    print(f"\n== {title}: {len(ks)} kernels, {total / 1e3:.1f} us of GPU time")
    for name, (n, ns) in sorted(agg.items(), key=lambda kv: -kv[1][1])[:top]:
        print(f"{ns / 1e3:10.1f} us {100 * ns / total:5.1f}%  x{n:<4d} {name}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    cmd = a.cmd[1:] if a.cmd and a.cmd[0] == "--" else a.cmd
    ks, _ = run_ncu(cmd)
    names = [k[0] for k in ks]
    period = 0
    for p in range(1, len(names) // 2 + 1):
        if names[-p:] == names[-2 * p:-p]:
            period = p
            break
    if period:
        table("one decode step (the last)", ks[-period:], a.top)
        first = len(ks) - period
        while first - period >= 0 and names[first - period:first] == names[-period:]:
            first -= period
        table("before the decode steps (load, prefill)", ks[:first], a.top)
    else:
        table("all kernels", ks, a.top)


if __name__ == "__main__":
    main()
