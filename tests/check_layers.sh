#!/usr/bin/env bash
# The layers include only downward (README, Layout): every project include in a folder must
# name a folder that layer may use. Prints each include that breaks this and fails.
#   core/     -> core
#   kernels/  -> core, kernels
#   engine/   -> core, kernels, engine
#   weights/  -> core, weights (the formats: named raw tensors and side-config files)
#   clip/     -> core, engine, weights, clip (the kernels only through the engine)
#   tools/    -> the public API: clip/ (and core/ for the shared vocabulary), tools
# The build enforces the same (CMakeLists.txt: each layer compiles against an include root
# of only these folders); this check names every offending line at once.
set -euo pipefail
cd "${1:-$(dirname "$0")/..}"
allowed() {  # folder -> allowed include prefixes
  case "$1" in
    core) echo "core/" ;;
    kernels) echo "core/ kernels/" ;;
    engine) echo "core/ kernels/ engine/" ;;
    weights) echo "core/ weights/" ;;
    clip) echo "core/ engine/ weights/ clip/" ;;
    tools) echo "core/ clip/ tools/" ;;
  esac
}
bad=0
for layer in core kernels engine weights clip tools; do
  ok=$(allowed "$layer")
  while IFS= read -r line; do
    file=${line%%:*}
    inc=$(sed -n 's/^#include "\([^"]*\)".*/\1/p' <<<"${line#*:}")
    case "$inc" in */*) ;; *) continue ;; esac  # same-folder or system-style includes
    pass=0
    for p in $ok; do
      case "$inc" in "$p"*) pass=1 ;; esac
    done
    if [ $pass = 0 ]; then
      echo "layering: $file includes \"$inc\" (the $layer layer may include: $ok)"
      bad=1
    fi
  done < <(grep -rn '^#include "' "$layer" --include='*.h' --include='*.cpp' --include='*.cu' --include='*.cuh' --include='*.inc' | sed 's/:[0-9]*:/:/')
done
exit $bad
