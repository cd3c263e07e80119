#!/usr/bin/env bash
# The README's first command: install what is missing, build (Release), build the test guest,
# and run the main job (root: the testbed uses network namespaces).
# Arguments are passed to `vandra demo` (e.g. --json, --profile ldvm, --keep).
set -euo pipefail
cd "$(dirname "$0")/.."
tools/install-deps.sh
cmake -S . -B build-release -G Ninja -DCMAKE_BUILD_TYPE=Release -DVANDRA_TESTS=OFF -DVANDRA_BENCH=OFF >/dev/null
cmake --build build-release --target vandra vandrad vandra-wanem >/dev/null
GUEST=${VANDRA_GUEST_DIR:-build-guest/guest-out}
# Always (re)built so it matches this checkout; the downloaded packages are cached.
echo "building the test guest into $GUEST (guest/build.sh)" >&2
guest/build.sh "$GUEST" --vandra build-release/apps/vandra/vandra >/dev/null
exec build-release/apps/vandra/vandra demo --guest-dir "$GUEST" "$@"
