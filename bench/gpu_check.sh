#!/usr/bin/env bash
# GPU check in one command, from the repository root:  bash bench/gpu_check.sh
#
# Steps (each timed, each with its own time limit):
#   1. configure + build with CUDA (Release, sm_90) in build-gpu-check/
#   2. the whole ctest suite, GPU tests included
#   3. compute-sanitizer memcheck on a quick subset of the kernel tests
#   4. compute-sanitizer racecheck on the kernels that use shared memory
#   5. the kernel benchmark (CSV), then PyTorch's SDPA (cuDNN, flash, mem-efficient backends)
#      at the same attention shapes (bench/torch_attention_baseline.py)
#   6. the end-to-end benchmark: `clip bench --arch ViT-B-32 --device cuda --dtype f16`, then the
#      PyTorch baseline (bench/torch_gpu_baseline.py: eager and torch.compile) in the same session
#   7. where the GPU time goes: `clip bench --profile` (CUDA events around every node)
# The GPU machine fetches nothing: when the project's Debian libraries are missing there, the
# .deb files that scripts/gpu_deps.sh downloaded into .debs/ (carry it) are unpacked into
# .deps-root/ and the build uses them.
# Logs go to $OUT when set, else build-gpu-check/logs. A summary is printed at the end and
# the exit status is non-zero when any step failed. Meant to finish well under 8 minutes on
# an H100.
set -u -o pipefail
cd "$(dirname "$0")/.."

BUILD=build-gpu-check
LOGS="${OUT:-$PWD/$BUILD/logs}"
mkdir -p "$LOGS"
JOBS=$(nproc 2>/dev/null || echo 4)
SANITIZER=compute-sanitizer
command -v "$SANITIZER" >/dev/null 2>&1 || SANITIZER=/usr/local/cuda/bin/compute-sanitizer

SUMMARY=()
FAILED=0
step() {  # step NAME LIMIT_SECONDS COMMAND...
  local name=$1 limit=$2
  shift 2
  local log="$LOGS/$name.log" t0 t1 rc
  echo "== $name (limit ${limit}s, log $log)"
  t0=$(date +%s)
  timeout "$limit" bash -c "$*" >"$log" 2>&1
  rc=$?
  t1=$(date +%s)
  tail -n 5 "$log"
  if [ $rc -eq 0 ]; then
    SUMMARY+=("$(printf '%-12s ok      %4ds' "$name" $((t1 - t0)))")
  else
    FAILED=1
    SUMMARY+=("$(printf '%-12s FAILED  %4ds  (exit %d, see %s)' "$name" $((t1 - t0)) $rc "$log")")
  fi
}

{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true; } \
  >"$LOGS/device.txt" 2>&1
echo "device: $(cat "$LOGS/device.txt")"

DEPS_ARG=""
if [ -d .debs ] && [ ! -f /usr/include/zip.h ]; then
  R=$PWD/.deps-root
  rm -rf "$R" && mkdir -p "$R"
  for f in .debs/*.deb; do dpkg-deb -x "$f" "$R"; done
  export LD_LIBRARY_PATH=$R/usr/lib/x86_64-linux-gnu:$R/usr/lib/x86_64-linux-gnu/openblas-openmp${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  DEPS_ARG="-DCLIP_DEPS_ROOT=$R"
  echo "dependencies: unpacked $(ls .debs | wc -l) packages into $R"
fi

if [ -d .gpu-shared ]; then  # scripts/gpu_fixtures.sh: the goldens the GPU tests compare with
  export CLIP_GOLDEN_DIR=$PWD/.gpu-shared/golden CLIP_VOCAB_DIR=$PWD/.gpu-shared/clip
fi

step build 240 "cmake -B $BUILD -DCLIP_CUDA=ON -DCLIP_CUDA_ARCHS=90 -DCMAKE_BUILD_TYPE=Release $DEPS_ARG \
  && cmake --build $BUILD -j$JOBS"

step ctest 120 "ctest --test-dir $BUILD --output-on-failure -j8"

MEMCHECK_FILTER='*Attention*_T17_*:*Attention*_T65_*:*Attention*_B2_T77_NH8_*:*LayerNorm*_C17_*:*OutputsMayAliasX*'
MEMCHECK_FILTER+=':*LayerNorm*_C768_*:*BiasAct*_M3_N17_*:*CosineTopk*_M3_N17_*:*CosineTopk*_M129_*'
MEMCHECK_FILTER+=':*DTypeTest.L2NormalizeAndSoftmax*:*DTypeTest.ClassPosEmbed*'
MEMCHECK_FILTER+=':*DTypeTest.EmbeddingAndGatherRows*:*DTypeTest.AddBroadcast*:*GraphTest*'
step memcheck 90 "$SANITIZER --tool memcheck --error-exitcode 1 $BUILD/tests/test_kernels \
  --gtest_filter='$MEMCHECK_FILTER'"

RACECHECK_FILTER='*Attention*_T17_*:*Attention*_T65_*:*CosineTopk*_M3_N17_*:*CosineTopk*_M129_*'
step racecheck 60 "$SANITIZER --tool racecheck --error-exitcode 1 $BUILD/tests/test_kernels \
  --gtest_filter='$RACECHECK_FILTER'"

step bench 60 "$BUILD/bench/bench_kernels | tee '$LOGS/bench_kernels.csv'"

step sdpa 45 "python3 bench/torch_attention_baseline.py | tee '$LOGS/torch_attention.csv'"

step e2e 45 "$BUILD/clip bench --arch ViT-B-32 --device cuda --dtype f16 --batch-sizes 1,64,1024 --repeats 10 \
  --first-embedding | tee '$LOGS/clip_bench.txt'"

step torch 120 "python3 bench/torch_gpu_baseline.py --arch ViT-B-32 --batch-sizes 1,1024 | tee '$LOGS/torch_baseline.jsonl'"

step profile 30 "$BUILD/clip bench --arch ViT-B-32 --device cuda --dtype f16 --batch-sizes 1,1024 --repeats 3 \
  --tower image --profile | tee '$LOGS/clip_profile.txt'"

echo
echo "== summary (logs in $LOGS)"
for s in "${SUMMARY[@]}"; do echo "  $s"; done
exit $FAILED
