#!/usr/bin/env bash
# Installs the Debian 12 packages vandra needs to build, test and run (docs/adr/ says why each).
# Only installs what is missing; runs apt-get update once, only when something is missing.
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build pkg-config git
  libexpected-dev nlohmann-json3-dev libcli11-dev
  libxml2-dev libarchive-dev libssl-dev zlib1g-dev openssl
  libgtest-dev libgmock-dev libbenchmark-dev
  clang libclang-rt-14-dev
  qemu-utils qemu-system-x86
  libcpp-httplib-dev libsqlite3-dev
  iproute2 iputils-ping procps
  cpio xz-utils gcc libc6-dev  # guest/build.sh; busybox-static and the kernel are downloaded, not installed
  dosfstools mtools syslinux syslinux-common  # guest/build.sh: the guest's boot disk (ADR 0015)
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if ((${#missing[@]} == 0)); then
  exit 0
fi
echo "installing: ${missing[*]}" >&2
SUDO=""
if [[ $(id -u) -ne 0 ]]; then
  SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
