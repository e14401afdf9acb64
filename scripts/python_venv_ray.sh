#!/usr/bin/env bash
# The environment for clip_engine.bulk's Ray tests and for running it on Ray by hand:
# .venv-ray at the repository root, from tests/python/requirements-ray.txt (the test
# environment's packages, Ray and pyarrow), with the interpreter the module in BUILD (default
# build/) was built for; refreshed when either changes. Prints the environment's python.
# Measured here: 14 s to install (pip's cache warm), 548 MB on disk (.venv-py: 120 MB).
#   bash scripts/python_venv_ray.sh && bash scripts/python_test.sh build ray
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
venv=.venv-ray
req=tests/python/requirements-ray.txt
base=$(cat "$build/python/python_executable.txt" 2>/dev/null || command -v python3)
want="$base
$(cat "$req" tests/python/requirements.txt)"
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$venv/.requirements" 2>/dev/null)" != "$want" ]; then
  rm -rf "$venv"
  "$base" -m venv "$venv" >&2
  (cd tests/python && "../../$venv/bin/python" -m pip install -q --disable-pip-version-check -r requirements-ray.txt) >&2
  printf '%s' "$want" > "$venv/.requirements"
fi
echo "$PWD/$venv/bin/python"
