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
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh --test-trees
run() {  # run LABEL TREE [CLIP_CPU_ISA value, empty: uncapped]
  local t0=$SECONDS
  echo "== $1"
  if [ -n "${3:-}" ]; then
    CLIP_CPU_ISA=$3 ctest --test-dir "$2" --output-on-failure -j2
  else
    env -u CLIP_CPU_ISA ctest --test-dir "$2" --output-on-failure -j2
  fi
  echo "== $1: passed in $((SECONDS - t0)) s"
}
detected=$(env -u CLIP_CPU_ISA ./build/clip info --system --json | sed -n 's/.*"cpu_isa": "\([a-z0-9]*\).*/\1/p')
run "build/ ($detected, as detected)" build
if [ "$detected" = avx512 ]; then
  run "build/ capped at avx2" build avx2
  # oneDNN at its plain AVX-512 (Skylake-X) kernels: the linear layers' batch invariance.
  t0=$SECONDS
  echo "== build/ linear layers with oneDNN capped at AVX512_CORE"
  ONEDNN_MAX_CPU_ISA=AVX512_CORE env -u CLIP_CPU_ISA ctest --test-dir build --output-on-failure -j2 -R 'Linear|CpuContext'
  echo "== build/ linear layers with oneDNN capped at AVX512_CORE: passed in $((SECONDS - t0)) s"
fi
if [ "$detected" != baseline ]; then run "build/ capped at baseline" build baseline; fi
run "build-asan/" build-asan
run "build-emu/" build-emu
