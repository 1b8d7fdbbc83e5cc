#!/usr/bin/env bash
# tools/chaos.sh — a chaos run on demand, as long as you like, against one
# store (docs/testing.md explains what it does and checks).
#
#   tools/chaos.sh --store redis --seconds 1800 --seed 42
#   tools/chaos.sh --store sqlite --seconds 600 --workers 6 --out /tmp/chaos-run
#   tools/chaos.sh --store postgres --seconds 600   # transactional mode: no duplicated effect at all
#   tools/chaos.sh --help
#
# Every argument goes to `idem_chaos run`. Without --seed the seed comes from
# the clock and is printed, with the command that replays the same fault
# schedule. The harness is built first in <build root>/ci (preset ci) unless
# IDEM_CHAOS_BIN names an idem_chaos binary.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="${IDEM_CHAOS_BIN:-}"
if [[ -z "$bin" ]]; then
  build="${IDEM_BUILD_ROOT:-$repo/build}/ci"
  if [[ ! -f "$build/CMakeCache.txt" ]]; then
    (cd "$repo" && cmake --preset ci -B "$build" >/dev/null)
  fi
  cmake --build "$build" --target idem_chaos -j "${IDEM_JOBS:-2}" >/dev/null
  bin="$build/tests/idem_chaos"
fi
if [[ "${1:-}" == "--help" || "${1:-}" == "-h" ]]; then
  exec "$bin" run --help
fi
exec "$bin" run "$@"
