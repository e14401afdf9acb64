#!/usr/bin/env bash
# Runs every libFuzzer target in build-fuzz for a bounded time each.
#   CC=clang CXX=clang++ cmake -B build-fuzz -DCLIP_FUZZ=ON -DCLIP_CUDA=OFF
#   cmake --build build-fuzz -j2
#   scripts/fuzz.sh [seconds-per-target]      (default 30)
# A target fuzz_X starts from the seeds in tests/fuzz_corpus/X/ and grows a working corpus
# in build-fuzz/corpus/X/ (the checked-in seeds are never modified). Crashes are written to
# build-fuzz/crashes/X/; the script exits non-zero if any target failed.
set -u
cd "$(dirname "$0")/.."
secs="${1:-30}"
build="${CLIP_FUZZ_BUILD:-build-fuzz}"
if [ ! -d "$build/fuzz" ]; then
  echo "no $build/fuzz: configure with CC=clang CXX=clang++ cmake -B $build -DCLIP_FUZZ=ON -DCLIP_CUDA=OFF" >&2
  exit 2
fi
status=0
found=0
for bin in "$build"/fuzz/fuzz_*; do
  [ -x "$bin" ] && [ -f "$bin" ] || continue
  found=1
  name="$(basename "$bin")"
  corpus_name="${name#fuzz_}"
  seeds="tests/fuzz_corpus/$corpus_name"
  work="$build/corpus/$corpus_name"
  crashes="$build/crashes/$corpus_name"
  mkdir -p "$work" "$crashes"
  dirs=("$work")
  [ -d "$seeds" ] && dirs+=("$seeds")
  echo "== $name: ${secs}s, seeds from $seeds"
  if ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1}" "$bin" -max_total_time="$secs" \
      -rss_limit_mb=2048 -timeout=10 -max_len=65536 -print_final_stats=1 \
      -artifact_prefix="$crashes/" "${dirs[@]}" > "$build/$name.log" 2>&1; then
    echo "   ok: $(grep -E '^stat::number_of_executed_units' "$build/$name.log" | awk '{print $2}') runs, corpus $(ls "$work" | wc -l) files"
  else
    echo "   FAILED (see $build/$name.log, artifacts in $crashes/)"
    tail -30 "$build/$name.log"
    status=1
  fi
done
[ "$found" = 1 ] || { echo "no fuzz targets in $build/fuzz" >&2; exit 2; }
exit $status
