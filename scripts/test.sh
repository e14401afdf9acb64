#!/usr/bin/env bash
# The test suite (README's test command). Builds what is missing (scripts/build.sh
# --test-trees), then runs ctest:
#   build/       three times: as this CPU runs it, capped at AVX2 (CLIP_CPU_ISA=avx2) and at
#                the x86-64 baseline (CLIP_CPU_ISA=baseline), so one machine tests what an
#                AVX2-only or an older CPU would run (engine/cpu_isa.h); a cap at or above
#                what the CPU has changes nothing and is skipped; on AVX-512, the linear-layer
#                tests once more with oneDNN capped at AVX512_CORE (ONEDNN_MAX_CPU_ISA)
#   build-asan/  CPU-only, under AddressSanitizer + UBSan
#   build-emu/   the CUDA code on the CPU emulator
# and the Python package's tests (tests/python/) against build/'s module, in .venv-py
# (scripts/python_test.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh --test-trees
run() {  # run LABEL TREE [VAR=VALUE ...] [-- CTEST_ARGS ...]; CLIP_CPU_ISA unset unless given
  local label=$1 tree=$2 t0=$SECONDS vars=()
  shift 2
  while [ $# -gt 0 ] && [ "$1" != -- ]; do vars+=("$1"); shift; done
  [ "${1:-}" = -- ] && shift
  echo "== $label"
  env -u CLIP_CPU_ISA "${vars[@]}" ctest --test-dir "$tree" --output-on-failure -j2 "$@"
  echo "== $label: passed in $((SECONDS - t0)) s"
}
detected=$(env -u CLIP_CPU_ISA ./build/clip info --system --json | sed -n 's/.*"cpu_isa": "\([a-z0-9]*\).*/\1/p')
run "build/ ($detected, as detected)" build
if [ "$detected" = avx512 ]; then
  run "build/ capped at avx2" build CLIP_CPU_ISA=avx2 ONEDNN_MAX_CPU_ISA=AVX2
  # oneDNN at its plain AVX-512 (Skylake-X) kernels: the linear layers' and convolutions'
  # batch invariance.
  run "build/ linear layers and convolutions with oneDNN capped at AVX512_CORE" build ONEDNN_MAX_CPU_ISA=AVX512_CORE -- \
    -R 'Linear|CpuContext|ResNetModel|ResNetGolden|ResNetOp.*_cpu_'
fi
if [ "$detected" != baseline ]; then run "build/ capped at baseline" build CLIP_CPU_ISA=baseline ONEDNN_MAX_CPU_ISA=SSE41; fi
echo "== python (build/python)"; t0=$SECONDS
bash scripts/python_test.sh build
echo "== python: passed in $((SECONDS - t0)) s"
run "build-asan/" build-asan
run "build-emu/" build-emu
