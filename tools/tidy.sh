#!/usr/bin/env bash
# tools/tidy.sh — runs clang-tidy (.clang-tidy) over Idem's own sources using
# the compile_commands.json of a configured build tree.
#   tools/tidy.sh                      # build/dev, every file under src/ cli/ fuzz/
#   tools/tidy.sh BUILD_DIR [FILE...]  # another tree, or only some files
# Not part of tools/test.sh: it takes several minutes on two cores.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
build_dir="${1:-build/dev}"
shift || true
if [[ ! -f "$build_dir/compile_commands.json" ]]; then
  echo "tidy.sh: $build_dir/compile_commands.json is missing; configure first (cmake --preset dev)" >&2
  exit 1
fi
runner="$(command -v run-clang-tidy-14 || command -v run-clang-tidy || true)"
if [[ $# -gt 0 ]]; then
  exec clang-tidy -p "$build_dir" --quiet "$@"
elif [[ -n "$runner" ]]; then
  # run-clang-tidy takes regular expressions of files to check.
  exec "$runner" -p "$build_dir" -quiet -j "${IDEM_JOBS:-2}" "$PWD/(src|cli|fuzz)/.*\.cpp$"
else
  find src cli fuzz -name '*.cpp' -print0 | xargs -0 -r clang-tidy -p "$build_dir" --quiet
fi
