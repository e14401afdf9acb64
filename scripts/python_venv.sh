#!/usr/bin/env bash
# The Python tests' virtual environments at the repository root, made with the interpreter the
# module in BUILD (default build/) was built for (BUILD/python/python_executable.txt) and
# refreshed when it or the requirements change. Prints the environment's python.
#   python_venv.sh [BUILD] [KIND]
#   KIND py (default): .venv-py from tests/python/requirements.txt (numpy, pytest, Pillow 9.4.0),
#        what scripts/python_test.sh runs the tests in
#   KIND ray: .venv-ray from tests/python/requirements-ray.txt (the same, Ray and pyarrow: 548 MB
#        against .venv-py's 120 MB, 20 s), where clip_engine.bulk's Ray tests run instead of
#        skipping (bash scripts/python_test.sh build ray)
#   KIND index: .venv-index from tests/python/requirements-index.txt (autofaiss, embedding-reader:
#        clip-retrieval's index step, 16 s), which tests/python/test_bulk.py runs
#        tests/python/index_check.py in when it exists
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
kind=${2:-py}
case "$kind" in
  py) req=tests/python/requirements.txt ;;
  ray | index) req=tests/python/requirements-$kind.txt ;;
  *) echo "python_venv.sh: KIND is py, ray or index, not $kind" >&2; exit 2 ;;
esac
venv=.venv-$kind
base=$(cat "$build/python/python_executable.txt" 2>/dev/null || command -v python3)
want="$base
$(cat "$req" tests/python/requirements.txt)"
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$venv/.requirements" 2>/dev/null)" != "$want" ]; then
  rm -rf "$venv"
  "$base" -m venv "$venv" >&2
  "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$req" >&2
  printf '%s' "$want" > "$venv/.requirements"
fi
echo "$PWD/$venv/bin/python"
