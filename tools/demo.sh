#!/usr/bin/env bash
# The README's first command: install what is missing, build (Release), run the main job.
# Arguments are passed to `vandra demo` (e.g. --json).
set -euo pipefail
cd "$(dirname "$0")/.."
tools/install-deps.sh
cmake -S . -B build-release -G Ninja -DCMAKE_BUILD_TYPE=Release -DVANDRA_TESTS=OFF -DVANDRA_BENCH=OFF >/dev/null
cmake --build build-release --target vandra >/dev/null
exec build-release/apps/vandra/vandra demo "$@"
