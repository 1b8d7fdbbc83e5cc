#!/usr/bin/env bash
# tools/demo.sh — the README's first command: installs what is needed
# (Debian 12), builds the `idem` tool (Release, only that target) and runs
# `idem demo` on the embedded default store (SQLite, no server).
#
#   ./tools/demo.sh                 # the demo with its defaults
#   ./tools/demo.sh --workers 16    # arguments go to `idem demo`
#
# Environment: IDEM_BUILD_ROOT (default <repo>/build; the tree is <root>/release),
# IDEM_JOBS (default 2), IDEM_SKIP_DEPS=1 to skip the package install.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
build_dir="${IDEM_BUILD_ROOT:-$repo/build}/release"

./tools/install-deps.sh
cmake --preset release -B "$build_dir"
cmake --build "$build_dir" -j "${IDEM_JOBS:-2}" --target idem_cli

idem="$build_dir/cli/idem"
if [[ ! -x "$idem" ]]; then
  # The target's output name or folder moved: find the binary rather than fail.
  idem="$(find "$build_dir" -type f -name idem -perm -u+x | head -n 1)"
fi
if [[ -z "$idem" || ! -x "$idem" ]]; then
  echo "demo.sh: built idem_cli but found no 'idem' executable under $build_dir" >&2
  exit 1
fi
echo "+ $idem demo $*"
exec "$idem" demo "$@"
