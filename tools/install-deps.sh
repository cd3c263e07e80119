#!/usr/bin/env bash
# Installs the Debian 12 packages vandra needs to build, test and run (docs/adr/ says why each).
# Only installs what is missing. Runs apt-get update once, when something is missing or when
# apt has no package lists (a fresh machine may have every package installed and empty lists;
# guest/build.sh then could not `apt-get download` the guest's kernel and busybox).
# Says what it does on stderr, with apt's own progress, so a first run is never silent.
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build pkg-config git
  ccache  # a second build from any clone on this machine reuses the objects (ADR 0031)
  libexpected-dev nlohmann-json3-dev libcli11-dev
  libxml2-dev libarchive-dev libssl-dev zlib1g-dev openssl
  libzstd-dev  # the tunnel's compression of bulk streams (ADR 0026)
  libxxhash-dev  # the content index's block hash: RAM pages sent as references (ADR 0030)
  libgtest-dev libgmock-dev libbenchmark-dev
  clang libclang-rt-14-dev clang-format  # clang-format: tools/check-format.sh
  qemu-utils qemu-system-x86
  libcpp-httplib-dev libsqlite3-dev
  prometheus-cpp-dev libvalijson-dev  # the controller's /metrics; OpenAPI checks in tests
  libpq-dev postgresql  # the controller's database; test/db starts a real server (ADR 0020)
  iproute2 iputils-ping procps
  cpio xz-utils gcc libc6-dev  # guest/build.sh; busybox-static and the kernel are downloaded, not installed
  dosfstools mtools syslinux syslinux-common  # guest/build.sh: the guest's boot disk (ADR 0015)
  e2fsprogs  # guest/build.sh --real-files-mib: the data disk's file system of real files
  nodejs chromium  # the web console: npm ci builds it (web/, ADR 0024); browser tests drive Chromium
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
SUDO=""
if [[ $(id -u) -ne 0 ]]; then
  SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
# guest/build.sh downloads these with apt-get download (never installs them).
lists_known() {
  apt-cache show --no-all-versions busybox-static linux-image-cloud-amd64 >/dev/null 2>&1
}
if ((${#missing[@]} == 0)) && lists_known; then
  exit 0
fi
echo "install-deps: updating apt's package lists" >&2
$SUDO apt-get update -q 2>&1 | sed 's/^/  apt: /' >&2
lists_known || echo "install-deps: warning: apt still knows no busybox-static or" \
  "linux-image-cloud-amd64 (guest/build.sh needs them): check /etc/apt/sources.list" >&2
if ((${#missing[@]} > 0)); then
  echo "install-deps: installing ${#missing[@]} packages: ${missing[*]}" >&2
  # One line per package as apt unpacks and sets it up: progress without the noise.
  $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}" 2>&1 |
    grep --line-buffered -E '^(Unpacking|Setting up) ' | sed -u 's/^/  apt: /' >&2
  still=()
  for p in "${missing[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || still+=("$p")
  done
  if ((${#still[@]} > 0)); then
    echo "install-deps: apt-get could not install: ${still[*]}" >&2
    exit 1
  fi
  echo "install-deps: done" >&2
fi
