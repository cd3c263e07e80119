#!/usr/bin/env bash
# Fails, naming the files, when a tracked C/C++ file differs from what clang-format (the
# repository's .clang-format) makes of it. `tools/check-format.sh --fix` formats them in place.
set -euo pipefail
cd "$(dirname "$0")/.."
mapfile -t files < <(git ls-files '*.cc' '*.h' '*.c')
if [[ ${1:-} == --fix ]]; then
  clang-format -i "${files[@]}"
  exit 0
fi
# One clang-format run over every file; its warnings name the files ("path:line:col: ...").
if ! out=$(clang-format --dry-run --Werror "${files[@]}" 2>&1); then
  echo "not formatted (run tools/check-format.sh --fix):" >&2
  grep -oE '^[^:]+\.(cc|h|c):' <<<"$out" | sort -u | sed 's/:$//; s/^/  /' >&2
  exit 1
fi
echo "${#files[@]} files formatted"
