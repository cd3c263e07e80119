#!/bin/sh
# vguest-files: the real files on a data disk built by guest/build.sh --real-files-mib.
#   vguest-files load DEV DIR   mount DEV read-only at DIR, read every file once (so that they
#                               sit in the page cache, as a running VM's working files do);
#                               prints LOADED bytes=N
#   vguest-files check DIR      every file against the SHA-256 the build recorded
#                               (MANIFEST.sha256); prints PASS files=N, or FAIL and exits 1
set -eu
usage() {
  echo "usage: vguest-files load DEV DIR | check DIR" >&2
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
  *) usage ;;
esac
