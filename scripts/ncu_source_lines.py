#!/usr/bin/env python3
"""Where a kernel's instructions and stalls go, by source line.

Nsight Compute counts executed instructions and stall samples per SASS instruction
(`scripts/gpu_check.sh hotspots` saves that table: `ncu --section SourceCounters --page source --print-source sass
--csv`). This script puts those counts back on source lines: it disassembles the same build's object with
`nvdisasm -g` (hyrax compiles CUDA with -lineinfo), pairs the two instruction lists one to one, checks that the
opcodes agree, and prints the lines that execute the most instructions, with their share of the stall samples and
their most frequent opcodes.

    scripts/ncu_source_lines.py --csv out/gpu_check/hotspots_gdn_chunk_prep.csv.gz \\
        --object build-cuda/CMakeFiles/hyrax_cuda.dir/src/kernels/gated_delta_rule/gated_delta_rule_chunked.cu.o \\
        --kernel 'gdn_chunk_prep_kernelILi96'

--object takes a .o or an executable (its embedded cubins); --kernel picks the function among those whose mangled
name contains it (the first, in the object's order; the profiled launch must be that instance). cuobjdump and
nvdisasm are looked for in --cuda-bin, /usr/local/cuda/bin, the triton package of the active virtualenv or of .venv
(the triton wheel carries both), then PATH.
"""
import argparse
import collections
import csv
import glob
import gzip
import os
import re
import shutil
import subprocess
import sys
import tempfile


def find_tool(name, cuda_bin):
    places = [cuda_bin] if cuda_bin else []
    places += ["/usr/local/cuda/bin"]
    venvs = [os.environ.get("VIRTUAL_ENV", ""), os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".venv")]
    for v in venvs:
        if v:
            places += sorted(glob.glob(os.path.join(v, "lib", "python3*", "site-packages", "triton", "backends",
                                                    "nvidia", "bin")))
    for p in places:
        if p and os.path.exists(os.path.join(p, name)):
            return os.path.join(p, name)
    found = shutil.which(name)
    if found:
        return found
    sys.exit(f"ncu_source_lines: {name} not found (--cuda-bin, /usr/local/cuda/bin, a virtualenv's triton, PATH)")


def read_ncu(path):
    """[(opcode text, instructions executed, stall samples)] in address order, from ncu's SASS source page CSV."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", newline="") as f:
        rows = list(csv.reader(f))
    heads = [i for i, r in enumerate(rows) if r and r[0] == "Address"]
    if not heads:
        sys.exit(f"ncu_source_lines: {path}: no 'Address' header (was it made with --print-source sass --csv?)")
    if len(heads) > 1:
        print(f"note: {path} holds {len(heads)} kernels; using the first", file=sys.stderr)
    head = rows[heads[0]]
    end = heads[1] if len(heads) > 1 else len(rows)
    try:
        ie, ist = head.index("Instructions Executed"), head.index("Warp Stall Sampling (All Samples)")
    except ValueError as e:
        sys.exit(f"ncu_source_lines: {path}: column missing ({e}); collect with --section SourceCounters")
    out = []
    for r in rows[heads[0] + 1:end]:
        if len(r) <= max(ie, ist) or not r[0].startswith("0x"):
            continue
        out.append((r[1].strip(), int(r[ie] or 0), int(r[ist] or 0)))
    return out


def disassemble(obj, kernel, cuobjdump, nvdisasm):
    """[((file, line), opcode text)] of the first function whose mangled name contains `kernel`."""
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([cuobjdump, "-xelf", "all", os.path.abspath(obj)], cwd=tmp, check=True,
                       stdout=subprocess.DEVNULL)
        cubins = sorted(glob.glob(os.path.join(tmp, "*.cubin")))
        if not cubins:
            sys.exit(f"ncu_source_lines: {obj}: no cubin inside")
        for cubin in cubins:
            text = subprocess.run([nvdisasm, "-g", cubin], check=True, capture_output=True, text=True).stdout
            lines = text.split("\n")
            start = next((i for i, l in enumerate(lines) if l.startswith("//-----") and ".text." in l and kernel in l),
                         None)
            if start is None:
                continue
            ins, where = [], None
            for l in lines[start + 1:]:
                if l.startswith("//-----"):
                    break
                m = re.search(r'## File "([^"]+)", line (\d+)', l)
                if m:
                    where = (os.path.basename(m.group(1)), int(m.group(2)))
                    continue
                m = re.match(r"\s+/\*[0-9a-f]{4,}\*/\s+(.*?)\s*;", l)
                if m:
                    ins.append((where, m.group(1)))
            return ins
    sys.exit(f"ncu_source_lines: no function whose name contains {kernel!r} in {obj}")


def opcode(text):
    t = text.split()
    t = t[1:] if t and t[0].startswith("@") else t
    return t[0].split(".")[0] if t else ""


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--csv", required=True, help="ncu --page source --print-source sass --csv output (.gz allowed)")
    ap.add_argument("--object", required=True, help="the profiled build's object file or executable")
    ap.add_argument("--kernel", required=True, help="a piece of the kernel's mangled name")
    ap.add_argument("--top", type=int, default=30, help="lines to print (default 30)")
    ap.add_argument("--cuda-bin", help="where cuobjdump and nvdisasm are")
    a = ap.parse_args()
    prof = read_ncu(a.csv)
    ins = disassemble(a.object, a.kernel, find_tool("cuobjdump", a.cuda_bin), find_tool("nvdisasm", a.cuda_bin))
    if len(ins) != len(prof):
        sys.exit(f"ncu_source_lines: {len(ins)} instructions in the object against {len(prof)} profiled: not the "
                 "same build or not the same kernel instance")
    wrong = sum(1 for (_, t), (p, _, _) in zip(ins, prof) if opcode(t) != opcode(p))
    if wrong:
        sys.exit(f"ncu_source_lines: {wrong} opcodes differ between the object and the profile: not the same build")
    n_ins, n_stall = collections.Counter(), collections.Counter()
    ops = collections.defaultdict(collections.Counter)
    for (where, t), (_, n, st) in zip(ins, prof):
        n_ins[where] += n
        n_stall[where] += st
        ops[where][opcode(t)] += n
    tot, tot_st = max(sum(n_ins.values()), 1), max(sum(n_stall.values()), 1)
    print(f"{sum(n_ins.values())} warp instructions executed, {sum(n_stall.values())} stall samples, "
          f"{len(ins)} SASS instructions")
    print(f"{'instr':>6} {'stall':>6}  line")
    for where, n in n_ins.most_common(a.top):
        f, l = where if where else ("?", 0)
        top_ops = ", ".join(f"{o} {c * 100 // max(n, 1)}%" for o, c in ops[where].most_common(4))
        print(f"{100 * n / tot:5.1f}% {100 * n_stall[where] / tot_st:5.1f}%  {f}:{l}  ({top_ops})")


if __name__ == "__main__":
    main()
