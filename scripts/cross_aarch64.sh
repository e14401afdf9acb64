#!/usr/bin/env bash
# Cross-builds the CPU build for aarch64 with Debian's g++-aarch64-linux-gnu and runs its test
# suite under qemu-user (build-aarch64/). Not part of CI: under emulation the suite takes long.
# Installs (Debian multiarch) the cross compiler, qemu-user and the arm64 -dev packages.
#   bash scripts/cross_aarch64.sh            # set up, build, run ctest
#   CTEST_ARGS="-R Linear" bash scripts/cross_aarch64.sh   (default: -L 'test_ops|test_cpu_kernels|test_graph|test_tokenizer')
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
ARM_PKGS=(libgtest-dev libgmock-dev libstb-dev libjpeg62-turbo-dev libpng-dev libwebp-dev libtiff-dev libutf8proc-dev libzip-dev zlib1g-dev
  libsentencepiece-dev libcpp-httplib-dev libarchive-dev liblcms2-dev)
need=()
command -v aarch64-linux-gnu-g++ >/dev/null || need+=(g++-aarch64-linux-gnu)
command -v qemu-aarch64 >/dev/null || need+=(qemu-user)
for p in nlohmann-json3-dev libcli11-dev; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
for p in "${ARM_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p:arm64" 2>/dev/null | grep -q "install ok installed" || need+=("$p:arm64")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "cross_aarch64: installing ${need[*]}"
  dpkg --print-foreign-architectures | grep -qx arm64 || $SUDO dpkg --add-architecture arm64
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
cmake -S . -B build-aarch64 -DCMAKE_BUILD_TYPE=Release -DCLIP_CUDA=OFF -DCLIP_WERROR=ON \
  -DCMAKE_TOOLCHAIN_FILE="$PWD/scripts/aarch64.toolchain.cmake" >/dev/null
cmake --build build-aarch64 -j "${JOBS:-$(nproc)}"
readelf -h build-aarch64/clip | grep Machine
t0=$SECONDS
# Under qemu, OpenMP's spinning threads slow everything down by orders of magnitude: one
# thread, waiting passively. The default is the CPU ops and graph tests (minutes); set
# CTEST_ARGS=" " for the whole suite (hours emulated).
# shellcheck disable=SC2086
OMP_NUM_THREADS=1 OMP_WAIT_POLICY=passive ctest --test-dir build-aarch64 --output-on-failure -j2 --timeout 3000 \
  ${CTEST_ARGS:--L test_ops|test_cpu_kernels|test_graph|test_tokenizer}
echo "cross_aarch64: tests passed under qemu-aarch64 in $((SECONDS - t0)) s"
