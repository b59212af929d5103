#!/usr/bin/env python3
"""Where one decode step's GPU time goes, kernel by kernel, from Nsight Compute's CSV.

On the GPU machine (scripts/gpu_check.sh, stage `profile`):

    ncu --clock-control none --metrics gpu__time_duration.sum --csv --print-units base \\
        hyrax bench --config configs/olmo-hybrid-7b.json --dummy-weights --device cuda \\
            --prompt-len 16 --decode 2 --batch 1 > ncu.csv
    python3 scripts/ncu_step_breakdown.py ncu.csv

A step is the kernels after one sampling kernel up to and including the next; the last complete one is taken.
Kernels are grouped by name (template arguments kept: they tell the decode GEMM's variants apart), grid and block.
ncu runs each kernel alone with caches flushed, so each time is a cold, unoverlapped upper bound; the step itself
(`hyrax bench`) is shorter.
"""
import collections
import csv
import re
import sys


def main(path: str) -> None:
    rows, header = [], None
    with open(path, newline="") as f:
        for r in csv.reader(f):
            if r and r[0] == "ID":
                header = r
            elif header and len(r) == len(header):
                rows.append(dict(zip(header, r)))
    if not rows:
        sys.exit(f"{path}: no kernel rows (is it ncu --csv output?)")
    kernels = []
    for d in rows:
        name = re.sub(r"\(anonymous namespace\)::", "", d["Kernel Name"])
        name = re.sub(r"^void ", "", name)
        name = re.sub(r"\(.*$", "", name)  # the parameter list
        kernels.append((name, d["Grid Size"], d["Block Size"], float(d["Metric Value"].replace(",", ""))))
    ends = [i for i, k in enumerate(kernels) if "sample_kernel" in k[0]]
    if len(ends) < 2:
        sys.exit(f"{path}: fewer than two sampling kernels, so no complete step")
    step = kernels[ends[-2] + 1 : ends[-1] + 1]
    groups = collections.defaultdict(lambda: [0, 0.0])
    for name, grid, block, ns in step:
        g = groups[(name, grid, block)]
        g[0] += 1
        g[1] += ns
    total = sum(k[3] for k in step)
    print(f"one decode step: {len(step)} kernels, {total / 1e3:.1f} us (each kernel alone, caches flushed)")
    print(f"{'count':>5} {'total us':>9} {'us each':>8}  kernel  grid  block")
    for (name, grid, block), (n, ns) in sorted(groups.items(), key=lambda kv: -kv[1][1]):
        print(f"{n:5d} {ns / 1e3:9.1f} {ns / n / 1e3:8.2f}  {name}  {grid}  {block}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: ncu_step_breakdown.py NCU_CSV")
    main(sys.argv[1])
