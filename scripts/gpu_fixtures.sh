#!/usr/bin/env bash
# Copies the part of ../shared that the GPU tests need (the HF checkpoints, goldens, images and
# vocabulary: ~35 MB) into .gpu-shared/ (ignored by git), because ../shared does not travel
# to the GPU machine. Carry .gpu-shared; bench/gpu_check.sh points the tests at it.
set -euo pipefail
cd "$(dirname "$0")/.."
SRC=${1:-../shared}
rm -rf .gpu-shared && mkdir -p .gpu-shared/golden .gpu-shared/clip
cp "$SRC/clip/bpe_simple_vocab_16e6.txt.gz" .gpu-shared/clip/
cp -r "$SRC/golden/images" "$SRC/golden/tokenizer.json" .gpu-shared/golden/
for m in tiny-vit tiny-vit-gelu; do
  mkdir -p ".gpu-shared/golden/$m"
  cp "$SRC/golden/$m/golden.json" ".gpu-shared/golden/$m/"
  cp -r "$SRC/golden/$m/hf" ".gpu-shared/golden/$m/"
done
du -sh .gpu-shared | cut -f1 | xargs echo "gpu_fixtures: .gpu-shared size"
