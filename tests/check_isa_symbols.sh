#!/usr/bin/env bash
# The per-instruction-set objects (engine/cpu_kernels_*.cpp) must define one external symbol
# each, their table: any other (an inline function or template instantiation from a header)
# could be the copy the linker keeps for the whole program, and an AVX-512 copy of it would
# crash a CPU without AVX-512. Usage: check_isa_symbols.sh OBJECT_DIR
set -euo pipefail
dir=$1
shopt -s nullglob
objs=("$dir"/cpu_kernels_*.o)
[ ${#objs[@]} -ge 1 ] || { echo "no cpu_kernels_*.o under $dir"; exit 1; }
bad=0
for o in "${objs[@]}"; do
  isa=$(basename "$o" | sed -E 's/^cpu_kernels_([a-z0-9]+)\..*/\1/')
  # Defined external symbols, except the C++ runtime's personality reference.
  syms=$(nm -g --defined-only "$o" | awk '{print $3}' | grep -v '^DW\.ref\.__gxx_personality_v0$' || true)
  want=$(nm -g --defined-only "$o" | awk '{print $3}' | grep -c "cpu_kernels_${isa}" || true)
  count=$(printf '%s\n' "$syms" | grep -c . || true)
  if [ "$count" -gt 1 ] || { [ "$count" -eq 1 ] && [ "$want" -ne 1 ]; }; then
    echo "$o defines more than its table:"; printf '%s\n' "$syms" | c++filt; bad=1
  fi
  echo "$(basename "$o"): $count external symbol(s)"
done
exit $bad
