#!/usr/bin/env bash
# The README's test command: set up, build, run every CPU test (GPU tests are labelled `gpu` and skipped here).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
ctest --test-dir build -LE gpu --output-on-failure -j"$(nproc)" "$@"
