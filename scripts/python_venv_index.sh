#!/usr/bin/env bash
# .venv-index at the repository root: autofaiss and embedding-reader (clip-retrieval's index
# step and its reader) from tests/python/requirements-index.txt, for tests/python/index_check.py,
# which tests/python/test_bulk.py runs on a bulk output folder when this environment exists.
# Refreshed when the file changes. Prints the environment's python. Measured here: 16 s.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.venv-index
req=tests/python/requirements-index.txt
base=$(command -v python3)
want="$base
$(cat "$req")"
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$venv/.requirements" 2>/dev/null)" != "$want" ]; then
  rm -rf "$venv"
  "$base" -m venv "$venv" >&2
  "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$req" >&2
  printf '%s' "$want" > "$venv/.requirements"
fi
echo "$PWD/$venv/bin/python"
