#!/usr/bin/env bash
# The GPU check, in two halves (docs/CUDA.md):
#   scripts/gpu_check.sh --build   here (nvcc, no GPU needed): builds build-cuda/ and copies the binaries the GPU
#                                  machine needs into .gpu/ (git-ignored); fetches the peer wheels into .whl/.
#   scripts/gpu_check.sh           on the GPU machine, from the repository root with .gpu (and .whl) carried: runs
#                                  the GPU tests, the kernel benchmarks, the peers (fla, torch SDPA), the CLI on every
#                                  fixture and the demo model, the whole-model 7B bench, serving, a kernel-by-kernel
#                                  profile of a batch-1 step (Nsight Compute) and compute-sanitizer; logs go to $OUT.
# Each stage has its own time limit so that one slow stage cannot eat the others' time.
set -uo pipefail
cd "$(dirname "$0")/.."

if [[ "${1:-}" == "--build" ]]; then
  set -e
  cmake -S . -B build-cuda -DCMAKE_BUILD_TYPE=Release
  cmake --build build-cuda -j"$(nproc)" --target hyrax hyrax_gpu_tests
  mkdir -p .gpu/lib
  cp build-cuda/hyrax build-cuda/tests/hyrax_gpu_tests .gpu/
  strip .gpu/hyrax .gpu/hyrax_gpu_tests
  # Shared libraries hyrax links that the GPU machine's image lacks (the HTTP server's).
  for lib in libcpp-httplib.so.0.11 libbrotlicommon.so.1 libbrotlidec.so.1 libbrotlienc.so.1; do
    cp -L "/lib/x86_64-linux-gnu/$lib" .gpu/lib/
  done
  if ! ls .whl/fla_core-*.whl >/dev/null 2>&1; then
    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
      -d .whl flash-linear-attention==0.6.0 fla-core==0.6.0
  fi
  du -sh .gpu .whl
  exit 0
fi

OUT=${OUT:-out/gpu_check}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
export LD_LIBRARY_PATH="$PWD/.gpu/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
# `scripts/gpu_check.sh [STAGE ...]` runs only the named stages (tests kernels cli floor peers model serve profile
# sanitizer; and, only when named, hotspots);
# all of them take ~15 minutes, more than one device call allows, so a call usually names a few.
STAGES=" ${*:-tests kernels cli floor peers model serve profile sanitizer} "
want() { [[ "$STAGES" == *" $1 "* ]]; }
stage() { echo; echo "==== $1 ($(date -u +%H:%M:%S))"; }

stage "machine"
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,driver_version --format=csv | tee "$OUT/machine.txt"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl &&
    export PYTHONPATH=/tmp/site
fi

if want tests; then
stage "GPU tests"
timeout 200 .gpu/hyrax_gpu_tests > "$OUT/gpu_tests.log" 2>&1
echo "hyrax_gpu_tests exit code $?"
grep -E 'FAILED|PASSED|Failure|^  |tests ran' "$OUT/gpu_tests.log" | head -150
fi

if want kernels; then
stage "kernel benchmarks"
timeout 100 .gpu/hyrax bench-kernels --device cuda 2>&1 | tee "$OUT/bench_kernels.log"
fi

if want cli; then
stage "CLI on the fixtures and the demo model"
{
  for f in tests/fixtures/*/reference/meta.json; do
    d=$(dirname "$(dirname "$f")")
    python3 -c "import json,sys; print(' '.join(map(str, json.load(open('$f'))['ids'])))" > /tmp/ids.txt
    timeout 20 .gpu/hyrax logits --device cuda --model "$d" --ids-file /tmp/ids.txt --out /tmp/logits.f32 &&
      python3 - "$d" <<'EOF'
import json, sys
import numpy as np
d = sys.argv[1]
V = json.load(open(d + "/reference/meta.json"))["vocab_size"]
got = np.fromfile("/tmp/logits.f32", dtype=np.float32).reshape(-1, V).astype(np.float64)
want = np.fromfile(d + "/reference/logits.f32", dtype=np.float32).reshape(-1, V).astype(np.float64)
lw = want - want.max(1, keepdims=True); lw -= np.log(np.exp(lw).sum(1, keepdims=True))
lg = got - got.max(1, keepdims=True); lg -= np.log(np.exp(lg).sum(1, keepdims=True))
kl = (np.exp(lw) * (lw - lg)).sum(1)
top1 = (got.argmax(1) == want.argmax(1)).mean()
print(f"hyrax logits --device cuda {d}: top-1 {100 * top1:.2f}%  KL mean {kl.mean():.2e} max {kl.max():.2e}")
EOF
  done
  timeout 20 .gpu/hyrax generate --device cuda --ids "1175 262 2121" -n 40 --stats
} 2>&1 | tee "$OUT/cli.log"
fi

if want floor; then
stage "bf16 noise floor: transformers in bf16 against its own float32 fixture logits"
# transformers' own torch implementation (fla left out of its path: its first-call autotuning takes minutes)
env -u PYTHONPATH timeout 120 python3 bench/peers/bf16_floor.py 2>&1 | grep -v "Loading weights" | tee "$OUT/bf16_floor.log"
fi

if want peers; then
stage "peers: fla and torch SDPA"
# (fla autotunes its varlen kernels at their first call: the 8 x 2k case needs the longer limit)
timeout 300 python3 bench/peers/peer_bench.py 2>&1 | tee "$OUT/peer_bench.log"
fi

if want model; then
stage "whole model: Olmo Hybrid 7B, dummy weights (decode at batch 1 / 32 / 256, an 8k prefill)"
B=".gpu/hyrax bench --config configs/olmo-hybrid-7b.json --dummy-weights --device cuda"
{
  for b in 1 32 256; do timeout 60 $B --prompt-len 64 --decode 16 --batch $b 2>&1 | grep -E "^decode|^limit:"; done
  timeout 90 $B --prompt-len 8192 --chunk 8192 --decode 8 --batch 1 2>&1 | grep -E "^prefill|^decode|^limit:"
} | tee "$OUT/bench_7b.log"
fi

if want serve; then
stage "serving: the vLLM workload (8192 in, 1024 out, 32 clients)"
timeout 150 .gpu/hyrax bench serve --config configs/olmo-hybrid-7b.json --dummy-weights --device cuda -c 32 -n 32 \
  --input-len 8192 --output-len 1024 --prefill-chunk 2048 --max-memory 40G 2>&1 | tail -9 | tee "$OUT/serve.log"
fi

if want profile; then
stage "profile: one batch-1 7B decode step, kernel by kernel (Nsight Compute, each kernel alone)"
NCU=$(command -v ncu || echo /usr/local/cuda/bin/ncu)
timeout 200 "$NCU" --clock-control none --metrics gpu__time_duration.sum --csv --print-units base \
  .gpu/hyrax bench --config configs/olmo-hybrid-7b.json --dummy-weights --device cuda --prompt-len 16 --decode 2 \
  --batch 1 > "$OUT/ncu_b1.csv" 2> "$OUT/ncu_b1.err"
python3 scripts/ncu_step_breakdown.py "$OUT/ncu_b1.csv" | tee "$OUT/step_breakdown.log"
fi

if want hotspots; then
stage "hotspots: instructions executed and stall samples per SASS instruction of the GDN kernels (Nsight Compute)"
# The first launch of each kernel in `bench-kernels --only gdn --quick` (Olmo's shapes). Back here, with the same
# build: scripts/ncu_source_lines.py --csv $OUT/hotspots_<kernel>.csv.gz --object <the .cu.o> --kernel <name piece>.
NCU=$(command -v ncu || echo /usr/local/cuda/bin/ncu)
for k in ${HOTSPOT_KERNELS:-gdn_chunk_prep gdn_chunk_state_wgmma gdn_recurrent}; do
  timeout 120 "$NCU" --clock-control none -k "regex:$k" -c 1 --section SourceCounters --page source \
    --print-source sass --csv .gpu/hyrax bench-kernels --device cuda --only gdn --quick \
    > "$OUT/hotspots_$k.csv" 2> "$OUT/hotspots_$k.err"
  echo "$k: exit code $?, $(grep -c '^"0x' "$OUT/hotspots_$k.csv") SASS instructions profiled"
  gzip -f "$OUT/hotspots_$k.csv"
done
fi

if want sanitizer; then
stage "compute-sanitizer (memcheck) on the small GDN and conv cases"
timeout 60 compute-sanitizer --tool memcheck --print-limit 20 .gpu/hyrax_gpu_tests \
  --gtest_filter='Shapes/GpuGdn.RecurrentAndChunked*/0:*GpuConv1d*:GpuRope.*' 2>&1 | tail -15
fi

stage "done"
