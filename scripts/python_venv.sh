#!/usr/bin/env bash
# The Python tests' virtual environment, .venv-py at the repository root, from
# tests/python/requirements.txt (numpy, pytest, Pillow 9.4.0), made with the interpreter the
# module in BUILD (default build/) was built for (BUILD/python/python_executable.txt) and
# refreshed when either changes. Prints the environment's python.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
venv=.venv-py
req=tests/python/requirements.txt
base=$(cat "$build/python/python_executable.txt" 2>/dev/null || command -v python3)
want="$base
$(cat "$req")"
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$venv/.requirements" 2>/dev/null)" != "$want" ]; then
  rm -rf "$venv"
  "$base" -m venv "$venv" >&2
  "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$req" >&2
  printf '%s' "$want" > "$venv/.requirements"
fi
echo "$PWD/$venv/bin/python"
