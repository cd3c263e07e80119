#!/usr/bin/env bash
# The README's first command: install what is missing, build (Release), build the test guest,
# and run the main job (root: the testbed uses network namespaces).
# Arguments are passed to `vandra demo` (e.g. --json, --profile ldvm, --keep: the testbed and
# the web console stay up, their address and users printed).
# Progress goes to stderr, one stage at a time, so stdout stays the demo's own (--json: one
# JSON object).
set -euo pipefail
cd "$(dirname "$0")/.."
stage() { echo "== [$1/5] $2" >&2; }

stage 1 "packages (tools/install-deps.sh: only what is missing)"
tools/install-deps.sh

stage 2 "build (Release: vandra, vandrad, vandra-wanem, vandra-controller in build-release; the first time takes minutes)"
cmake -S . -B build-release -G Ninja -DCMAKE_BUILD_TYPE=Release -DVANDRA_TESTS=OFF \
  -DVANDRA_BENCH=OFF >/dev/null
# Ninja's "[done/total]" counter, one line every tenth of the way (and the errors, if any).
set +e
cmake --build build-release --target vandra vandrad vandra-wanem vandra-controller 2>&1 |
  awk '/^\[[0-9]+\/[0-9]+\]/ { split(substr($1, 2), n, "/"); step = int(10 * n[1] / n[2]);
         if (step != last) { printf "  build: %d of %d steps\n", n[1], n[2] > "/dev/stderr"; last = step }
         next }
       /^ninja: no work to do/ { print "  build: up to date" > "/dev/stderr"; next }
       { print > "/dev/stderr" }'
rc=${PIPESTATUS[0]}
set -e
if ((rc != 0)); then
  echo "tools/demo.sh: the build failed (output above)" >&2
  exit "$rc"
fi

GUEST=${VANDRA_GUEST_DIR:-build-guest/guest-out}
# Always (re)built so it matches this checkout; the downloaded packages are cached.
stage 3 "web console (web/: npm ci from the lockfile, then vite build into web/dist)"
(cd web && npm ci --no-audit --no-fund --loglevel=error && npm run build --silent) 2>&1 |
  sed -u 's/^/  console: /' >&2

stage 4 "test guest (guest/build.sh into $GUEST: kernel and busybox from Debian, programs, OVA)"
guest/build.sh "$GUEST" --vandra build-release/apps/vandra/vandra 2>&1 >/dev/null |
  sed -u 's/^/  guest: /' >&2

stage 5 "vandra demo (three sites and the controller with the web console: import, moves by request, wandering under pressure, coming home; --keep leaves it running)"
exec build-release/apps/vandra/vandra demo --guest-dir "$GUEST" --console web/dist "$@"
