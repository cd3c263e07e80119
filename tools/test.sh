#!/usr/bin/env bash
# The README's second command: install what is missing, build everything with ASan+UBSan,
# run every test (ctest: unit, golden, corpus, integration), then run each fuzz target
# briefly (clang libFuzzer build) over its corpus. Exits non-zero on the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/install-deps.sh

JOBS=$(nproc)
# The third-party OVF corpus lives beside the repository (CI has it); tests skip it if absent.
if [[ -z "${VANDRA_OVF_CORPUS:-}" && -d ../shared/ovf-corpus ]]; then
  export VANDRA_OVF_CORPUS="$(cd ../shared/ovf-corpus && pwd)"
fi

echo "== format (clang-format, .clang-format)"
tools/check-format.sh

echo "== build (Debug, ASan+UBSan)"
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DVANDRA_SANITIZE=ON >/dev/null
cmake --build build-asan -j "$JOBS"

echo "== web console (web/: npm ci from the lockfile, type check and build, unit tests)"
# The built console (web/dist) is what the controller serves in the browser tests. Node.js and
# npm are the machine's (tools/install-deps.sh installs nodejs where it is missing).
command -v npm >/dev/null || { echo "tools/test.sh: npm not found (Node.js 20 with npm)" >&2; exit 1; }
(cd web && npm ci --no-audit --no-fund --loglevel=error && npm run build --silent && npm test --silent)

echo "== test guest (guest/build.sh; shared by every test that boots it)"
export VANDRA_GUEST_DIR="$PWD/build-asan/guest-out"
guest/build.sh "$VANDRA_GUEST_DIR" --vandra build-asan/apps/vandra/vandra >/dev/null

echo "== tests"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
# No test is run again: a test that fails once fails the run (docs/testing.md). In CI
# (CI=true) a test that cannot run here (no root, QEMU, /dev/net/tun or guest) fails rather
# than skips (test/support/require.h).
ctest_log=$(mktemp)
trap 'rm -f "$ctest_log"' EXIT
set +e
ctest --test-dir build-asan --output-on-failure -j "$JOBS" 2>&1 | tee "$ctest_log"
rc=${PIPESTATUS[0]}
set -e
# Say which tests were skipped, and why it is allowed (a known reader bug, an optional
# firmware, the third-party corpus when it is absent): a skip is never silent.
if grep -q "(Skipped)\|\*\*\*Skipped\|Not Run" "$ctest_log"; then
  echo "== skipped tests"
  grep "Skipped\|Not Run" "$ctest_log" | grep -v "^[0-9]*% tests passed" || true
fi
if ((rc != 0)); then
  echo "== tests failed (ctest exit $rc)" >&2
  exit "$rc"
fi

# 10 s a target keeps the whole run under an hour on a 2-core machine; longer campaigns run by
# hand with VANDRA_FUZZ_SECONDS (docs/testing.md).
echo "== fuzz (clang, libFuzzer, a few seconds each)"
CC=clang CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DVANDRA_FUZZ=ON -DVANDRA_TESTS=OFF -DVANDRA_BENCH=OFF >/dev/null
cmake --build build-fuzz -j "$JOBS" --target fuzz_all
for target in build-fuzz/test/fuzz/*_fuzz; do
  [[ -x "$target" ]] || continue
  name=$(basename "$target" _fuzz)
  case "$name" in
    ova_reader) corpus=test/fuzz/corpus/ova ;;
    ovf_descriptor) corpus=test/fuzz/corpus/descriptor ;;
    *) corpus="test/fuzz/corpus/$name" ;;
  esac
  work=$(mktemp -d)
  cp -r "$corpus"/. "$work"/ 2>/dev/null || true
  echo "-- $target ($corpus)"
  "$target" -max_total_time="${VANDRA_FUZZ_SECONDS:-10}" -rss_limit_mb=2048 -timeout=10 "$work" 2>&1 | tail -n 3
  rm -rf "$work"
done
echo "== all tests passed"
