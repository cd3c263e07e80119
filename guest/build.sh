#!/usr/bin/env bash
# Builds the vandra test guest reproducibly from Debian 12 packages (guest/README.md).
#
#   guest/build.sh [OUT_DIR] [--memory-mib N] [--disk-mib N] [--boot-mib N] [--vcpus N]
#                  [--ip CIDR] [--gw ADDR] [--append "PARAMS"] [--cache DIR] [--vandra PATH]
#                  [--real-files-mib N]
#
# OUT_DIR (default build-guest/guest-out in the repository) receives:
#   vmlinuz          kernel of linux-image-cloud-amd64 (also on boot.raw; -kernel for tests)
#   initrd.img       initramfs: busybox, virtio modules, guest/init, the vguest-* programs
#   boot.raw         boot disk (--boot-mib, default 32): FAT on the whole disk, no partition
#                    table, SYSLINUX in its boot sector, vmlinuz + initrd.img + syslinux.cfg
#                    whose APPEND line is "console=ttyS0 vandra.ip=CIDR vandra.gw=ADDR
#                    PARAMS" (--ip default 10.10.0.10/24, --gw default 10.10.0.1)
#   disk2.raw        blank raw data disk (--disk-mib, default 64) for vguest-diskpat; with
#                    --real-files-mib N it starts with an ext4 file system holding N MiB of
#                    this host's own files (binaries, libraries, documents from /usr, in path
#                    order) and their MANIFEST.sha256, the blank --disk-mib after it
#   content.json     {"content": "random"} or {"content": "real", "fs_mib", "files_mib",
#                    "files"}: what `vandra bench migrate --content real` reads
#   vmspec.json      VmSpec of the VM (--vcpus 1, --memory-mib 256 by default): disk1 = boot
#                    disk (virtio unit 0, first: bootindex 1), disk2 = data disk (unit 1)
#   test-guest.ova   the OVA users get: VmSpec + both disks + SLA section; it boots by itself
#                    (SeaBIOS -> SYSLINUX), no -kernel/-initrd; the guest sees disk2 as /dev/vdb
#                    (downtime-budget-ms=1000 jurisdictions=EU mobility=automatic)
#   bin/vguest-*     the guest programs (static, or busybox sh scripts; vguest-diskpat also
#                    checks images on a host)
#   versions.txt     package versions and kernel version used; SHA256SUMS of the artefacts
# Packages are downloaded with `apt-get download` (never installed) into --cache
# (default OUT_DIR/cache) and reused while apt's candidate version is unchanged. Set
# VANDRA_GUEST_KERNEL_PKG=linux-image-6.1.0-NN-cloud-amd64 to pin the kernel package.
# Two runs with the same packages and SOURCE_DATE_EPOCH give byte-identical vmlinuz,
# initrd.img, boot.raw and bin/* (file order sorted, mtimes fixed, owners 0:0, gzip -n, FAT
# volume id and times fixed).
# Needs: apt-get, dpkg-deb, gcc (static glibc: libc6-dev), cpio, gzip, xz, sha256sum,
# mkfs.fat (dosfstools), mcopy (mtools), syslinux, and the vandra CLI (--vandra, $VANDRA,
# or a build in the repository).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=""
MEMORY_MIB=256
DISK_MIB=64
BOOT_MIB=32
VCPUS=1
GUEST_IP=10.10.0.10/24
GUEST_GW=10.10.0.1
EXTRA_APPEND=""
CACHE=""
VANDRA_BIN=${VANDRA:-}
REAL_FILES_MIB=0
MODULES=(virtio_pci virtio_net virtio_blk)

die() {
  echo "guest/build.sh: $*" >&2
  exit 1
}

while (($#)); do
  case "$1" in
    --memory-mib) MEMORY_MIB=$2; shift 2 ;;
    --disk-mib) DISK_MIB=$2; shift 2 ;;
    --boot-mib) BOOT_MIB=$2; shift 2 ;;
    --ip) GUEST_IP=$2; shift 2 ;;
    --gw) GUEST_GW=$2; shift 2 ;;
    --append) EXTRA_APPEND=$2; shift 2 ;;
    --vcpus) VCPUS=$2; shift 2 ;;
    --cache) CACHE=$2; shift 2 ;;
    --vandra) VANDRA_BIN=$2; shift 2 ;;
    --real-files-mib) REAL_FILES_MIB=$2; shift 2 ;;
    -h|--help) sed -n '2,30p' "${BASH_SOURCE[0]}"; exit 0 ;;
    -*) die "unknown option $1" ;;
    *) [[ -z $OUT ]] || die "one OUT_DIR only"; OUT=$1; shift ;;
  esac
done
for n in "$MEMORY_MIB" "$DISK_MIB" "$BOOT_MIB" "$VCPUS"; do
  [[ $n =~ ^[1-9][0-9]*$ ]] || die "sizes and counts must be positive integers"
done
[[ $REAL_FILES_MIB =~ ^[0-9]+$ ]] && ((REAL_FILES_MIB <= 4096)) ||
  die "--real-files-mib wants 0 to 4096"
OCTET='(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])'
IPV4="$OCTET\.$OCTET\.$OCTET\.$OCTET"
[[ $GUEST_IP =~ ^$IPV4/([0-9]|[12][0-9]|3[0-2])$ ]] || die "--ip wants ADDR/LEN (IPv4), got '$GUEST_IP'"
[[ -z $GUEST_GW || $GUEST_GW =~ ^$IPV4$ ]] || die "--gw wants an IPv4 address, got '$GUEST_GW'"
# One line of printable ASCII: it goes verbatim into syslinux.cfg's APPEND line.
[[ $EXTRA_APPEND =~ ^[[:print:]]*$ ]] || die "--append must be one line of printable characters"
OUT=${OUT:-$REPO/build-guest/guest-out}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
CACHE=${CACHE:-$OUT/cache}
mkdir -p "$CACHE"
CACHE=$(cd "$CACHE" && pwd)

if [[ -z $VANDRA_BIN ]]; then
  for c in build-guest build-release build-rel build; do
    if [[ -x $REPO/$c/apps/vandra/vandra ]]; then
      VANDRA_BIN=$REPO/$c/apps/vandra/vandra
      break
    fi
  done
fi
VANDRA_BIN=${VANDRA_BIN:-$(command -v vandra || true)}
[[ -n $VANDRA_BIN && -x $VANDRA_BIN ]] || die "vandra CLI not found (build it, or pass --vandra)"
# mkfs.fat lives in /usr/sbin, which a user's PATH may lack.
PATH=$PATH:/usr/sbin:/sbin
for tool in apt-get apt-cache dpkg-deb gcc cpio gzip xz sha256sum mkfs.fat mcopy mdir syslinux; do
  command -v "$tool" >/dev/null || die "$tool is missing (tools/install-deps.sh installs it)"
done

# Fixed timestamp for every file in the initramfs: the caller's SOURCE_DATE_EPOCH, else the
# time of the last commit that changed guest/, else 0.
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$REPO" log -1 --format=%ct -- guest 2>/dev/null || true)}
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-0}
export SOURCE_DATE_EPOCH
export LC_ALL=C TZ=UTC

WORK=$(mktemp -d "${TMPDIR:-/tmp}/vandra-guest.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# fetch PKG: prints the path of the .deb of apt's candidate version, downloading it into
# the cache unless it is there already.
fetch() {
  local pkg=$1 version f
  version=$(apt-cache show --no-all-versions "$pkg" 2>/dev/null | awk '/^Version:/{print $2; exit}')
  [[ -n $version ]] || die "apt knows no package $pkg (run apt-get update)"
  for f in "$CACHE/${pkg}"_*.deb; do
    if [[ -f $f && $(dpkg-deb -f "$f" Version) == "$version" ]]; then
      echo "$f"
      return
    fi
  done
  (cd "$WORK" && apt-get download -q "$pkg=$version" >&2) || die "apt-get download $pkg failed"
  f=$(ls "$WORK/${pkg}"_*.deb)
  mv "$f" "$CACHE/"
  echo "$CACHE/$(basename "$f")"
}

KPKG=${VANDRA_GUEST_KERNEL_PKG:-$(apt-cache depends linux-image-cloud-amd64 2>/dev/null |
  awk '/Depends: linux-image-[0-9]/{print $2; exit}')}
[[ -n $KPKG ]] || die "cannot resolve linux-image-cloud-amd64 to a kernel package"
KDEB=$(fetch "$KPKG")
BDEB=$(fetch busybox-static)
echo "kernel package: $(basename "$KDEB"); busybox: $(basename "$BDEB")" >&2

dpkg-deb -x "$KDEB" "$WORK/kernel"
dpkg-deb -x "$BDEB" "$WORK/busybox"
BUSYBOX=$WORK/busybox/bin/busybox
[[ -x $BUSYBOX ]] || die "busybox-static has no bin/busybox"
KVER=$(ls "$WORK/kernel/lib/modules")
[[ $(wc -w <<<"$KVER") == 1 ]] || die "expected one kernel in $KPKG, got: $KVER"
KMOD=$WORK/kernel/lib/modules/$KVER
find "$KMOD" -name '*.ko.xz' -exec xz -d {} +
# modules.dep for the unpacked tree (the package leaves it to depmod at install time); the
# static busybox from the package runs on the build host too.
"$BUSYBOX" depmod -b "$WORK/kernel" "$KVER"
[[ -s $KMOD/modules.dep ]] || die "depmod wrote no modules.dep"

# Resolve the wanted modules and their dependencies into a load order (dependencies first).
declare -A DEPS=() BYNAME=() SEEN=()
while IFS= read -r line; do
  path=${line%%:*}
  DEPS[$path]=${line#*:}
  name=$(basename "$path" .ko)
  BYNAME[${name//-/_}]=$path
done <"$KMOD/modules.dep"
ORDER=()
visit() {
  local m=$1 d
  [[ -n ${SEEN[$m]:-} ]] && return
  SEEN[$m]=1
  for d in ${DEPS[$m]}; do
    visit "$d"
  done
  ORDER+=("$m")
}
for m in "${MODULES[@]}"; do
  [[ -n ${BYNAME[$m]:-} ]] || die "kernel $KVER has no module $m (built in?)"
  visit "${BYNAME[$m]}"
done

ROOT=$WORK/root
mkdir -p "$ROOT"/{bin,dev,proc,sys,run,tmp,etc,lib/modules/"$KVER"}
for m in "${ORDER[@]}"; do
  mkdir -p "$ROOT/lib/modules/$KVER/$(dirname "$m")"
  cp "$KMOD/$m" "$ROOT/lib/modules/$KVER/$m"
  echo "$m: ${DEPS[$m]# }" >>"$ROOT/lib/modules/$KVER/modules.dep"
done
printf '%s\n' "${ORDER[@]}" >"$ROOT/lib/modules/$KVER/vandra-load-order"

cp "$BUSYBOX" "$ROOT/bin/busybox"
for applet in $("$BUSYBOX" --list | sort); do
  [[ $applet == busybox || -e $ROOT/bin/$applet ]] || ln -s busybox "$ROOT/bin/$applet"
done
cp "$REPO/guest/init" "$ROOT/init"

mkdir -p "$OUT/bin"
for src in "$REPO"/guest/programs/vguest-*.c; do
  prog=$(basename "$src" .c)
  (cd "$REPO/guest/programs" && gcc -static -O2 -Wall -Wextra -Werror -o "$WORK/$prog" "$prog.c") ||
    die "compiling $prog failed"
  cp "$WORK/$prog" "$ROOT/bin/$prog"
  cp "$WORK/$prog" "$OUT/bin/$prog"
done
# The guest programs that are busybox shell scripts (vguest-files: real files on the data disk).
for src in "$REPO"/guest/programs/vguest-*.sh; do
  prog=$(basename "$src" .sh)
  cp "$src" "$ROOT/bin/$prog"
  cp "$src" "$OUT/bin/$prog"
done

{
  echo "kernel_package=$(dpkg-deb -f "$KDEB" Package)=$(dpkg-deb -f "$KDEB" Version)"
  echo "kernel_release=$KVER"
  echo "busybox_package=busybox-static=$(dpkg-deb -f "$BDEB" Version)"
  echo "modules=${MODULES[*]}"
  echo "source_date_epoch=$SOURCE_DATE_EPOCH"
} >"$ROOT/etc/vandra-guest-release"

# Normalise modes and times, then pack in sorted order with owners 0:0.
find "$ROOT" -type d -exec chmod 0755 {} +
find "$ROOT" -type f -exec chmod 0644 {} +
chmod 0755 "$ROOT/init" "$ROOT"/bin/busybox "$ROOT"/bin/vguest-*
find "$ROOT" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
(cd "$ROOT" && find . -mindepth 1 | sort | cpio -o -H newc -R 0:0 --reproducible --quiet) |
  gzip -9 -n >"$OUT/initrd.img.tmp"
mv "$OUT/initrd.img.tmp" "$OUT/initrd.img"
cp "$WORK/kernel/boot/vmlinuz-$KVER" "$OUT/vmlinuz"
cp "$ROOT/etc/vandra-guest-release" "$OUT/versions.txt"

# The boot disk: a FAT file system on the whole disk (a "superfloppy", no partition table)
# whose boot sector is SYSLINUX's; SeaBIOS loads sector 0 (0x55AA signature) of the first
# disk by bootindex. Everything goes in through mtools on the image file: no loop device,
# no mount, no root. Reproducible: fixed volume id and label (--invariant fixes the rest of
# mkfs.fat's time-based fields), mtimes kept by mcopy -m, and the times mtools gives the
# files it creates (ldlinux.sys, ldlinux.c32, directory entries) come from SOURCE_DATE_EPOCH.
APPEND="console=ttyS0 vandra.ip=$GUEST_IP${GUEST_GW:+ vandra.gw=$GUEST_GW}${EXTRA_APPEND:+ $EXTRA_APPEND}"
BOOT=$WORK/boot
mkdir -p "$BOOT"
cp "$OUT/vmlinuz" "$BOOT/vmlinuz"
cp "$OUT/initrd.img" "$BOOT/initrd.img"
cat >"$BOOT/syslinux.cfg" <<EOF
# vandra test guest (guest/build.sh): boots at once, boot loader messages on ttyS0 too.
SERIAL 0 115200
PROMPT 0
TIMEOUT 0
DEFAULT vandra
LABEL vandra
  LINUX /vmlinuz
  INITRD /initrd.img
  APPEND $APPEND
EOF
chmod 0644 "$BOOT"/*
touch -d "@$SOURCE_DATE_EPOCH" "$BOOT"/*
# Only the system-wide mtools.conf applies, not a user's ~/.mtoolsrc (syslinux sets its own).
export MTOOLSRC=/dev/null MTOOLS_SKIP_CHECK=1
rm -f "$OUT/boot.raw.tmp"
mkfs.fat --invariant -i 56414e44 -n VANDRABOOT -C "$OUT/boot.raw.tmp" $((BOOT_MIB * 1024)) >/dev/null ||
  die "mkfs.fat failed"
mcopy -m -i "$OUT/boot.raw.tmp" "$BOOT/vmlinuz" "$BOOT/initrd.img" "$BOOT/syslinux.cfg" ::/ ||
  die "mcopy into boot.raw failed (--boot-mib $BOOT_MIB too small?)"
syslinux --install "$OUT/boot.raw.tmp" || die "syslinux --install failed"
[[ $(od -An -tx1 -j510 -N2 "$OUT/boot.raw.tmp" | tr -d ' ') == 55aa ]] ||
  die "boot.raw has no boot signature in sector 0"
mv "$OUT/boot.raw.tmp" "$OUT/boot.raw"

# The data disk (the OVA's disk2); disk1.raw of older builds was the data disk.
rm -f "$OUT/disk1.raw" "$OUT/disk2.raw"
DATA_MIB=$DISK_MIB
if ((REAL_FILES_MIB > 0)); then
  # Content that looks like a real VM's: this host's own files, chosen by path order (never by
  # how well they compress), copied until REAL_FILES_MIB, each with its SHA-256 so the guest
  # can check them after a move.
  REAL=$WORK/real
  mkdir -p "$REAL/files"
  limit=$((REAL_FILES_MIB * 1048576))
  total=0
  count=0
  while IFS= read -r -d '' f; do
    size=$(stat -c %s "$f")
    ((total + size <= limit)) || continue
    [[ $f != *$'\n'* ]] || continue
    cp --parents -- "$f" "$REAL/files/" 2>/dev/null || continue
    total=$((total + size))
    count=$((count + 1))
    ((total < limit - 4096)) || break
  done < <(find /usr/bin /usr/lib/x86_64-linux-gnu /usr/share/doc /usr/share/perl -xdev \
             -type f -size +0 -readable -print0 2>/dev/null | LC_ALL=C sort -z)
  ((count > 0)) || die "no host files to fill the data disk with"
  (cd "$REAL" && find files -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum >MANIFEST.sha256)
  # ext4 needs room beyond the files (metadata, journal): a quarter more and 16 MiB.
  FS_MIB=$((REAL_FILES_MIB * 5 / 4 + 16))
  # 4 KiB blocks, as a real VM's file systems have (mke2fs would pick 1 KiB blocks for one this
  # small, its "small" profile; those put file pages off the 4 KiB grid of the disk).
  mke2fs -q -t ext4 -b 4096 -L vandra-data -E root_owner=0:0 -d "$REAL" "$OUT/disk2.raw" "${FS_MIB}M" ||
    die "mke2fs -d failed (e2fsprogs)"
  DATA_MIB=$((FS_MIB + DISK_MIB))
  truncate -s "${DATA_MIB}M" "$OUT/disk2.raw"
  printf '{"content": "real", "fs_mib": %d, "files_mib": %d, "files": %d, "bytes": %d}\n' \
    "$FS_MIB" "$REAL_FILES_MIB" "$count" "$total" >"$OUT/content.json"
else
  truncate -s "${DISK_MIB}M" "$OUT/disk2.raw"
  echo '{"content": "random"}' >"$OUT/content.json"
fi
cat >"$OUT/vmspec.json" <<EOF
{
  "ovf_version": "1.0",
  "virtual_systems": [
    {
      "id": "vandra-test-guest",
      "name": "vandra-test-guest",
      "vcpus": $VCPUS,
      "memory_mib": $MEMORY_MIB,
      "firmware": "bios",
      "os": {"cim_id": 101, "family": "linux", "description": "vandra test guest ($KVER, busybox)"},
      "controllers": [{"id": "virtio0", "kind": "virtio", "model": "virtio-blk"}],
      "disks": [{"id": "disk1", "capacity_bytes": $((BOOT_MIB * 1048576)), "format": "raw",
                 "controller": "virtio0", "unit": 0},
                {"id": "disk2", "capacity_bytes": $((DATA_MIB * 1048576)), "format": "raw",
                 "controller": "virtio0", "unit": 1}],
      "nics": [{"network": "vandra-test", "model": "virtio"}]
    }
  ],
  "networks": [{"name": "vandra-test", "description": "test network of the vandra test guest"}]
}
EOF
rm -f "$OUT/test-guest.ova"
"$VANDRA_BIN" ovf export --spec "$OUT/vmspec.json" --disk "disk1=$OUT/boot.raw" \
  --disk "disk2=$OUT/disk2.raw" -o "$OUT/test-guest.ova" >&2
"$VANDRA_BIN" ovf sla set "$OUT/test-guest.ova" downtime-budget-ms=1000 jurisdictions=EU \
  mobility=automatic >&2
echo "append=$APPEND" >>"$OUT/versions.txt"

(cd "$OUT" && sha256sum vmlinuz initrd.img boot.raw disk2.raw content.json test-guest.ova bin/vguest-* >SHA256SUMS)
echo "guest built in $OUT (kernel $KVER, initrd $(stat -c %s "$OUT/initrd.img") bytes, boot.raw ${BOOT_MIB} MiB: $APPEND)" >&2
