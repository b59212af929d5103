#!/usr/bin/env bash
# Sets up a fresh Debian machine for hyrax and builds it: Debian packages (only those missing), the test
# virtualenv (.venv, pinned versions from tests/requirements.txt), then a Release build in build/.
# Idempotent: a second run only rebuilds what changed.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(build-essential cmake ninja-build pkg-config git nlohmann-json3-dev libcpp-httplib-dev libcli11-dev
          libpcre2-dev libgtest-dev libgmock-dev libbenchmark-dev bible-kjv bible-kjv-text)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if ! command -v python3 >/dev/null 2>&1 || ! python3 -c "import venv, ensurepip" >/dev/null 2>&1; then
  missing+=(python3 python3-venv)
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# lm-eval is installed without its dependencies (tests/server/requirements-nodeps.txt says why).
if [ ! -x .venv/bin/python ] || ! cat tests/requirements.txt tests/server/requirements-nodeps.txt \
    | cmp -s - .venv/.requirements 2>/dev/null; then
  echo "setup: creating the test virtualenv .venv"
  python3 -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check -r tests/requirements.txt
  .venv/bin/pip install -q --disable-pip-version-check --no-deps -r tests/server/requirements-nodeps.txt
  cat tests/requirements.txt tests/server/requirements-nodeps.txt > .venv/.requirements
fi

cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build
