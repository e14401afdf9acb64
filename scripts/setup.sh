#!/usr/bin/env bash
# Installs every system package the project needs (Debian). Idempotent: does nothing
# when all packages are present. The CUDA toolkit (nvcc, cuBLAS, cuDNN) is expected
# under /usr/local/cuda; without it the build is CPU-only.
set -euo pipefail
PKGS=(
  cmake g++ make pkg-config
  libgtest-dev libgmock-dev      # tests
  nlohmann-json3-dev             # JSON
  libstb-dev                     # stb_image_write (tests write images)
  libjpeg62-turbo-dev libpng-dev # JPEG and PNG decoding (the reference's decoders)
  libwebp-dev                    # WebP decoding (libwebp and its demuxer: Pillow's)
  libtiff-dev                    # TIFF decoding (libtiff: Pillow's)
  liblcms2-dev                   # CIELAB TIFFs to RGB (LittleCMS: Pillow's ImageCms)
  libarchive-dev                 # WebDataset tar shards (plain and gzip)
  libutf8proc-dev                # Unicode categories, case mapping, NFC
  libzip-dev zlib1g-dev          # zip archives (torch checkpoints), gzip (BPE vocab)
  libcli11-dev                   # command-line parsing
  libcpp-httplib-dev             # HTTP server of `clip serve` (cpp-httplib 0.11)
  libdnnl-dev                    # oneDNN: CPU linear layers with weights packed once
  libsentencepiece-dev           # SentencePiece tokenizers (SigLIP, SigLIP 2)
  python3-dev python3-venv pybind11-dev  # the Python module (python/) and its tests' venv
  clang libclang-rt-14-dev libomp-dev  # libFuzzer targets (clang, its OpenMP)
)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#PKGS[@]} packages present"
  exit 0
fi
echo "setup: installing ${missing[*]}"
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
