#!/usr/bin/env bash
# The GPU machine (see bench/gpu_check.sh) can fetch nothing, and its image lacks the
# project's Debian libraries. Run this here, where the package registry is reachable: it
# downloads the .deb files into .debs/ (ignored by git); carry .debs to the GPU machine, where
# gpu_check.sh unpacks them into .deps-root/ and builds against them.
set -euo pipefail
cd "$(dirname "$0")/.."
PKGS=(
  libgtest-dev nlohmann-json3-dev libstb-dev libutf8proc-dev libutf8proc2 libzip-dev libzip4
  libcli11-dev libcpp-httplib-dev libcpp-httplib0.11 libssl-dev libbrotli-dev libbrotli1
  libjpeg62-turbo-dev libjpeg62-turbo libpng-dev libpng16-16 zlib1g-dev libdnnl-dev libdnnl2
  libwebp-dev libwebp7 libwebpdemux2 libtiff-dev libtiff6 liblerc4 libjbig0 libdeflate0 libsentencepiece-dev libsentencepiece0
  libarchive-dev libarchive13 libnettle8 libxml2
  liblcms2-dev liblcms2-2
)
mkdir -p .debs
cd .debs
apt-get download "${PKGS[@]}" >/dev/null
ls -1 | wc -l | xargs echo "gpu_deps: .debs holds" && du -sh . | cut -f1 | xargs echo "gpu_deps: size"
