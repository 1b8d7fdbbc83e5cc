#!/usr/bin/env bash
# tools/check-model.sh — model-checks Idem's protocol (docs/model/idem.pml)
# with spin, then checks that spin finds each planted bug. A few seconds.
#
#   tools/check-model.sh            # what CI runs (ctest entry model_spin)
#   IDEM_MODEL_KEEP=1 tools/check-model.sh   # keep the work directory (trails)
#
# Every run is `spin -a` (generates pan.c), a C compiler (pan.c needs one),
# and `./pan -a -f -N <ltl>`: exhaustive search, weak fairness, one LTL
# property; the model's assertions are checked in every run.
#
# Exit status: 0 all expectations met; 1 one was not; 77 spin or cc missing
# (a skip for ctest, a failure when IDEM_REQUIRE_SERVERS=1).
set -uo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
model="$repo/docs/model/idem.pml"
cc="${CC:-cc}"

for tool in spin "$cc"; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "check-model: $tool not found (Debian: apt-get install spin gcc)"
    [[ "${IDEM_REQUIRE_SERVERS:-0}" == 1 ]] && exit 1
    exit 77
  fi
done

work="$(mktemp -d "${TMPDIR:-/tmp}/idem-model-XXXXXX")"
cleanup() {
  if [[ "${IDEM_MODEL_KEEP:-0}" == 1 ]]; then
    echo "check-model: kept $work"
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT

failures=0

# check <name> <expect: holds|violated> <ltl property> <what the counterexample must show> [spin -D flags...]
check() {
  local name="$1" expect="$2" ltl="$3" needle="$4"
  shift 4
  # One verifier per set of -D flags: the two properties of the model share one.
  local flags="$*"
  local dir="$work/pan${flags//[^A-Za-z0-9_]/_}"
  local start=$SECONDS out errors
  mkdir -p "$dir"
  cp "$model" "$dir/idem.pml"
  if [[ ! -x "$dir/pan" ]] && ! (cd "$dir" && spin "$@" -a idem.pml >spin.log 2>&1 && "$cc" -O2 -w -o pan pan.c >cc.log 2>&1); then
    echo "FAIL $name: spin or the compiler failed:"
    cat "$dir/spin.log" "$dir/cc.log" 2>/dev/null | tail -n 20
    failures=$((failures + 1))
    return
  fi
  # -w21: a 2 MiB-slot hash table keeps memory near 64 MB for this model.
  out="$(cd "$dir" && ./pan -a -f -w21 -N "$ltl" 2>&1)"
  errors="$(sed -nE 's/.*errors: ([0-9]+).*/\1/p' <<<"$out" | tail -n 1)"
  local states
  states="$(sed -nE 's/^ *([0-9.e+]+) states, stored.*/\1/p' <<<"$out" | head -n 1)"
  if [[ "$expect" == holds ]]; then
    if [[ "$errors" == 0 ]]; then
      echo "ok   $name: $ltl holds, no assertion fails (${states:-?} states, $((SECONDS - start)) s)"
      return
    fi
    echo "FAIL $name: expected no error, spin found one:"
  else
    local trail
    trail="$(cd "$dir" && spin "$@" -t -N "$ltl" idem.pml 2>&1 | grep -E 'assertion violated|claim|violated' | head -n 3)"
    if [[ "${errors:-0}" -ge 1 ]] && grep -qF -- "$needle" <<<"$out"$'\n'"$trail"; then
      echo "ok   $name: spin finds the counterexample ($(grep -m1 -E 'assertion violated|acceptance cycle' <<<"$out" | sed 's/^pan:1: //'))"
      return
    fi
    echo "FAIL $name: expected spin to report '$needle', it did not:"
  fi
  printf '%s\n' "$out" | tail -n 30
  failures=$((failures + 1))
}

echo "check-model: $model"
check safety holds one_holder -
check liveness holds completes -
# The planted bugs: spin must find each one.
check no-token-check violated one_holder "owner==w" -DBREAK_TOKEN_CHECK
check no-token-floor violated one_holder "token>issued" -DBREAK_FLOOR
check no-lease-check violated one_holder "wlive[0]&&wlive[1]" -DBREAK_LEASE_CHECK

if [[ $failures -ne 0 ]]; then
  echo "check-model: $failures check(s) failed"
  exit 1
fi
echo "check-model: all checks passed"
