#!/usr/bin/env bash
# Builds the `clip` tool in build/ (Release; with CUDA when nvcc is present, sm_80 + sm_90;
# build/clip), and nothing else. With --test-trees, all of build/ (the test programs and
# benchmarks too) and the two trees only the tests use:
#   build-asan/  CPU-only, AddressSanitizer + UndefinedBehaviorSanitizer
#   build-emu/   the CUDA code compiled as C++ on the CPU emulator (tests/emu): the GPU tests
#                (kernels, CUDA backend, golden outputs through it) run without a GPU
# Warnings are errors (CLIP_WERROR=OFF in the environment turns that off).
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=${JOBS:-$(nproc)}
WERROR=${CLIP_WERROR:-ON}
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DCLIP_WERROR="$WERROR" ${CLIP_CMAKE_ARGS:-} >/dev/null
if [ "${1:-}" != --test-trees ]; then
  cmake --build build -j "$JOBS" --target clip
else
  cmake --build build -j "$JOBS"
  cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCLIP_CUDA=OFF -DCLIP_SANITIZE=ON \
    -DCLIP_WERROR="$WERROR" >/dev/null
  cmake --build build-asan -j "$JOBS"
  cmake -S . -B build-emu -DCMAKE_BUILD_TYPE=Release -DCLIP_CUDA=OFF -DCLIP_CUDA_EMU=ON \
    -DCLIP_WERROR="$WERROR" >/dev/null
  cmake --build build-emu -j "$JOBS" --target clip test_kernels test_ops test_golden test_resnet test_cli test_zoo test_siglip test_emu
fi
