#!/usr/bin/env bash
# The Python package's tests (tests/python/) against the module built in BUILD (default
# build/: build/python/clip_engine), in .venv-py (scripts/python_venv.sh). Skips, saying so,
# when the tree has no Python module (CLIP_PYTHON found no Python headers or pybind11).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
if ! ls "$build"/python/clip_engine/_core*.so >/dev/null 2>&1; then
  echo "python: skipped: $build has no Python module (needs python3-dev and pybind11-dev; see CLIP_PYTHON)"
  exit 0
fi
# A second argument "ray": in .venv-ray (scripts/python_venv.sh BUILD ray), where the Ray tests
# of tests/python/test_bulk.py run instead of skipping.
py=$(bash scripts/python_venv.sh "$build" "${2:-py}")
CLIP_BUILD_DIR="$PWD/$build" PYTHONPATH="$PWD/$build/python" "$py" -m pytest -q -p no:cacheprovider tests/python
