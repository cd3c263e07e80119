#!/bin/sh
# vguest-files: the real files on a data disk built by guest/build.sh --real-files-mib.
#   vguest-files load DEV DIR   mount DEV read-only at DIR, read every file once (so that they
#                               sit in the page cache, as a running VM's working files do);
#                               prints LOADED bytes=N
#   vguest-files check DIR      every file against the SHA-256 the build recorded
#                               (MANIFEST.sha256); prints PASS files=N, or FAIL and exits 1
#   vguest-files cache DEV MIB  read the first MIB MiB of the device DEV through the page
#                               cache (where a VM's recently read blocks sit); prints
#                               CACHED mib=MIB
set -eu
usage() {
  echo "usage: vguest-files load DEV DIR | check DIR | cache DEV MIB" >&2
  exit 2
}
case "${1:-}" in
  load)
    [ $# -eq 3 ] || usage
    mkdir -p "$3"
    mountpoint -q "$3" || mount -t ext4 -o ro "$2" "$3"
    echo "LOADED bytes=$(find "$3" -type f -exec cat {} + | wc -c)"
    ;;
  check)
    [ $# -eq 2 ] || usage
    cd "$2"
    if sha256sum -c -s MANIFEST.sha256; then
      echo "PASS files=$(wc -l <MANIFEST.sha256)"
    else
      echo "FAIL"
      exit 1
    fi
    ;;
  cache)
    [ $# -eq 3 ] || usage
    dd if="$2" of=/dev/null bs=1M count="$3" 2>/dev/null
    echo "CACHED mib=$3"
    ;;
  *) usage ;;
esac
