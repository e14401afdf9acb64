#!/usr/bin/env bash
# GPU check in one command, from the repository root:  bash bench/gpu_check.sh
#
# Two calls (GPU_CHECK_CALL=1, the default, then 2), each inside one budget
# (GPU_CHECK_BUDGET seconds, default 540: the device tool allows 600 s per command and 15
# minutes per session, start-up included). Each step has its own time limit; a step that the
# remaining budget cannot hold is skipped, not started. The first call's limits add up to
# 510 s: what a first GPU run must show; the second call's to 125 s past its build (after a first call on
# the same warm machine, its build only relinks).
# Call 1:
#   build      configure + build with CUDA (Release, sm_90) in build-gpu-check/
#   regs       registers, stack, shared and local (spilled) bytes of every kernel (cuobjdump
#              --dump-resource-usage); the kernels that spill are listed last
#   ctest      the test programs that hold GPU tests (kernels, golden, CLI, weights); the
#              rest is CPU-only and passes on the CPU machines
#   e2e        `clip bench --arch ViT-B-32 --device cuda --dtype f16`, batch 1 and 1024, both towers
#   profile    where the GPU time goes at batch 1024: `clip bench --profile` (CUDA events around
#              every node) beside each op's roofline time on this GPU
#   torch      the PyTorch baseline in the same session (bench/torch_gpu_baseline.py: eager
#              at 1 and 1024, torch.compile at 1024)
#   memcheck   compute-sanitizer memcheck on a quick subset of the kernel tests
# Call 2:
#   kernels    the kernel benchmark (CSV)
#   racecheck  compute-sanitizer racecheck on the kernels that use shared memory
#   initcheck  compute-sanitizer initcheck (reads of device memory nothing wrote) on the same
#              kernels, the elementwise ones and a graph run
#   sdpa       PyTorch's SDPA (cuDNN, flash, mem-efficient) at the attention shapes
# The GPU machine fetches nothing: when the project's Debian libraries are missing there, the
# .deb files that scripts/gpu_deps.sh downloaded into .debs/ (carry it) are unpacked into
# .deps-root/; the build uses them, and LD_LIBRARY_PATH points at them for the build and our
# programs only (PyTorch keeps the system's libraries).
# GPU_CHECK_STEPS="build ctest" runs only the steps named, whatever the call (a rerun on the
# same warm machine keeps build-gpu-check/, so its build only recompiles what changed).
# Each step's result line is printed as soon as it ends. Logs go to build-gpu-check/logs;
# when $OUT is set (the device tool), summary.txt and logs.tgz are written there at the end,
# also when a step fails or the run is cut short (the tool brings back at most 8 files).
set -u -o pipefail
cd "$(dirname "$0")/.."

BUILD=build-gpu-check
LOGS=$PWD/$BUILD/logs
rm -rf "$LOGS" && mkdir -p "$LOGS"
JOBS=$(nproc 2>/dev/null || echo 4)
BUDGET=${GPU_CHECK_BUDGET:-540}
CALL=${GPU_CHECK_CALL:-1}
START=$(date +%s)
SANITIZER=compute-sanitizer
command -v "$SANITIZER" >/dev/null 2>&1 || SANITIZER=/usr/local/cuda/bin/compute-sanitizer
SUMMARY=$LOGS/summary.txt
FAILED=0
STEPS="build regs ctest e2e profile torch memcheck kernels racecheck initcheck sdpa"
case "$CALL" in
  1) CALL_STEPS="build regs ctest e2e profile torch memcheck" ;;
  2) CALL_STEPS="build kernels racecheck initcheck sdpa" ;;
  *) echo "GPU_CHECK_CALL: 1 or 2, not '$CALL'"; exit 2 ;;
esac
for s in ${GPU_CHECK_STEPS:-}; do
  [[ " $STEPS " == *" $s "* ]] || { echo "GPU_CHECK_STEPS: unknown step '$s' (steps: $STEPS)"; exit 2; }
done

finish() {
  echo "== summary (logs in $LOGS)"
  cat "$SUMMARY"
  if [ -n "${OUT:-}" ]; then
    cp "$SUMMARY" "$OUT/summary.txt"
    tar -czf "$OUT/logs.tgz" -C "$BUILD" logs 2>/dev/null
  fi
}
trap finish EXIT

note() { echo "$1" | tee -a "$SUMMARY"; }

step() {  # step NAME LIMIT_SECONDS SHOW COMMAND   (SHOW: lines of the log to print, "all" or N)
  local name=$1 limit=$2 show=$3
  shift 3
  local log="$LOGS/$name.log" t0 rc left
  if [[ " ${GPU_CHECK_STEPS:-$CALL_STEPS} " != *" $name "* ]]; then return; fi
  t0=$(date +%s)
  left=$((BUDGET - (t0 - START)))
  if [ "$left" -lt 15 ]; then
    note "$(printf '%-10s SKIPPED (%ds of the %ds budget left)' "$name" "$left" "$BUDGET")"
    FAILED=1
    return
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  echo "== $name (limit ${limit}s)"
  timeout -k 10 "$limit" bash -o pipefail -c "$*" >"$log" 2>&1
  rc=$?
  if [ "$show" = all ]; then cat "$log"; else tail -n "$show" "$log"; fi
  if [ $rc -eq 0 ]; then
    note "$(printf '%-10s ok      %4ds' "$name" $(($(date +%s) - t0)))"
  else
    FAILED=1
    note "$(printf '%-10s FAILED  %4ds  (exit %d%s, log %s)' "$name" $(($(date +%s) - t0)) $rc \
      "$([ $rc -eq 124 ] || [ $rc -eq 137 ] && echo ", time limit")" "$name.log")"
  fi
}

note "device: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | head -n 1)"
note "date:   $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'), call $CALL"

DEPS_ARG=""
OURS=""  # prefix for our programs' commands
if [ -d .debs ] && [ ! -f /usr/include/zip.h ]; then
  R=$PWD/.deps-root
  rm -rf "$R" && mkdir -p "$R"
  for f in .debs/*.deb; do dpkg-deb -x "$f" "$R"; done
  DEPS_ARG="-DCLIP_DEPS_ROOT=$R"
  OURS="export LD_LIBRARY_PATH='$R/usr/lib/x86_64-linux-gnu'\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH};"
  note "deps:   unpacked $(ls .debs | wc -l) packages into $R"
fi

if [ -d .gpu-shared ]; then  # scripts/gpu_fixtures.sh: the goldens the GPU tests compare with
  export CLIP_GOLDEN_DIR=$PWD/.gpu-shared/golden CLIP_VOCAB_DIR=$PWD/.gpu-shared/clip
fi

# The build runs the test programs too (gtest_discover_tests), so it needs the libraries.
step build 200 5 "$OURS cmake -B $BUILD -DCLIP_CUDA=ON -DCLIP_CUDA_ARCHS=90 -DCMAKE_BUILD_TYPE=Release $DEPS_ARG \
  && cmake --build $BUILD -j$JOBS && { ldd $BUILD/clip | grep 'not found' && exit 1 || true; }"
if [ ! -x "$BUILD/clip" ] || grep -q "^build .*FAILED" "$SUMMARY"; then
  note "no fresh binary: the other steps are skipped"
  exit 1
fi

# One line per kernel: its REG, STACK, SHARED and LOCAL bytes and its name (demangled); then
# the kernels with local memory or a stack frame (spills, or arrays the compiler could not keep
# in registers).
kernel_resources() {
  local dump=cuobjdump
  command -v $dump >/dev/null 2>&1 || dump=/usr/local/cuda/bin/cuobjdump
  $dump --dump-resource-usage "$1" > "$2.raw" || return 1
  awk '/Function/ { f = $2; sub(/:$/, "", f) } /REG:/ { $1 = $1; print $0, f }' "$2.raw" | c++filt | sort -u > "$2"
  cat "$2"
  echo "-- $(wc -l < "$2") kernels; with local memory or a stack:"
  grep -vE 'STACK:0 SHARED:[0-9]+ LOCAL:0 ' "$2" || echo none
}
export -f kernel_resources
step regs 15 all "kernel_resources $BUILD/clip $LOGS/regs.txt"

step ctest 90 15 "$OURS ctest --test-dir $BUILD --output-on-failure -j8 -L 'test_kernels|test_ops|test_golden|test_resnet|test_cli|test_weights|test_zoo'"

step e2e 40 all "$OURS $BUILD/clip bench --arch ViT-B-32 --device cuda --dtype f16 --batch-sizes 1,1024 \
  --repeats 10 --first-embedding"

step profile 30 80 "$OURS $BUILD/clip bench --arch ViT-B-32 --device cuda --dtype f16 --batch-sizes 1024 \
  --repeats 3 --profile"

step torch 90 all "python3 bench/torch_gpu_baseline.py --arch ViT-B-32 --batch-sizes 1,1024 --compile-batch 1024"

# The ops (tests/test_ops.cpp, their CUDA cases) and the kernels that are not graph ops (tests/test_kernels.cu).
MEMCHECK_OPS='*AttentionTest*_T17_*cuda*:*AttentionTest*_T65_*cuda*:*AttentionTest*_B2_T77_NH8_*cuda*:*AttentionPoolTest*_T17_*cuda*:*AttentionPoolTest*_T130_*cuda*'
MEMCHECK_OPS+=':*LayerNormTest*_C17_*cuda*:*LayerNormTest*_C768_*cuda*:*L2NormalizeTest*cuda*:*SoftmaxTest*cuda*'
MEMCHECK_OPS+=':*ClassPosTest*cuda*:*EmbeddingTest*cuda*:*GatherRowsTest*cuda*:*AddTest*cuda*'
GEMM_FILTER='*GemmBiasAct*/f16_gelu_M129_N136_K72_bias:*GemmBiasAct*/bf16_none_M129_N136_K72_nobias'
MEMCHECK_FILTER="*OutputsMayAliasX*:*BiasAct*_M3_N17_*:*CosineTopk*_M3_N17_*:*CosineTopk*_M129_*:*GraphTest*:$GEMM_FILTER"
step memcheck 45 5 "$OURS $SANITIZER --tool memcheck --error-exitcode 1 $BUILD/tests/test_ops \
  --gtest_filter='$MEMCHECK_OPS' && $OURS $SANITIZER --tool memcheck --error-exitcode 1 $BUILD/tests/test_kernels \
  --gtest_filter='$MEMCHECK_FILTER'"

step kernels 40 all "$OURS $BUILD/bench/bench_kernels"

RACECHECK_OPS='*AttentionTest*_T17_*cuda*:*AttentionTest*_T65_*cuda*:*AttentionPoolTest*_T17_*cuda*:*AttentionPoolTest*_T130_*cuda*'
RACECHECK_FILTER="*CosineTopk*_M3_N17_*:*CosineTopk*_M129_*:$GEMM_FILTER"
step racecheck 30 5 "$OURS $SANITIZER --tool racecheck --error-exitcode 1 $BUILD/tests/test_ops \
  --gtest_filter='$RACECHECK_OPS' && $OURS $SANITIZER --tool racecheck --error-exitcode 1 $BUILD/tests/test_kernels \
  --gtest_filter='$RACECHECK_FILTER'"

INITCHECK_OPS="$RACECHECK_OPS:*LayerNormTest*_C17_*cuda*:*NormalizeRgb8Test*cuda*"
INITCHECK_FILTER="$RACECHECK_FILTER:*BiasAct*_M3_N17_*:*GraphTest*"
step initcheck 30 5 "$OURS $SANITIZER --tool initcheck --error-exitcode 1 $BUILD/tests/test_ops \
  --gtest_filter='$INITCHECK_OPS' && $OURS $SANITIZER --tool initcheck --error-exitcode 1 $BUILD/tests/test_kernels \
  --gtest_filter='$INITCHECK_FILTER'"

step sdpa 25 all "python3 bench/torch_attention_baseline.py"

exit $FAILED
