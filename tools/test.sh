#!/usr/bin/env bash
# Stages are called by name (stage_$name), which shellcheck cannot follow.
# shellcheck disable=SC2317
# tools/test.sh — the one test command of Idem (the README's; .ci/run runs it).
#
# Installs what it needs (Debian 12), then runs these stages and prints a
# summary. Every stage runs even when an earlier one failed; the exit status
# is non-zero when any stage failed.
#
#   ci     preset ci (RelWithDebInfo, -Werror): build everything, run every
#          ctest label (unit, conformance, integration, packaging, examples, ops,
#          docs, chaos, model, python) with IDEM_REQUIRE_SERVERS=1, so a missing server
#          fails instead of skipping
#   asan   preset asan-ubsan: the unit and conformance tests under ASan+UBSan
#   tsan   preset tsan: the unit and conformance tests under TSan
#   fuzz   preset fuzz (clang): each libFuzzer target for IDEM_FUZZ_SECONDS on
#          its seed corpus fuzz/corpus/<target>/
#   lint   clang-format --dry-run -Werror on every C++ file (fix: tools/format.sh)
#
# Environment:
#   IDEM_TEST_STAGES   stages to run, space-separated (default "ci asan tsan fuzz lint")
#   IDEM_BUILD_ROOT    where the build trees go (default <repo>/build; trees are <root>/<preset>)
#   IDEM_JOBS          build and ctest parallelism (default 2)
#   IDEM_FUZZ_SECONDS  time per fuzz target (default 30)
#   IDEM_CMAKE_ARGS    extra configure arguments for every tree, e.g. "-DIDEM_WITH_REDIS=OFF"
#   IDEM_SKIP_DEPS=1   do not run tools/install-deps.sh
#   IDEM_TSAN_SETARCH  1: always run TSan tests with ASLR off; 0: never; unset: probe
#   IDEM_REQUIRE_SERVERS  defaults to 1 here: integration tests fail when a server binary is missing
set -uo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo" || exit 1

stages="${IDEM_TEST_STAGES:-ci asan tsan fuzz lint}"
build_root="${IDEM_BUILD_ROOT:-$repo/build}"
jobs="${IDEM_JOBS:-2}"
fuzz_seconds="${IDEM_FUZZ_SECONDS:-30}"
read -r -a extra_cmake_args <<<"${IDEM_CMAKE_ARGS:-}"
export IDEM_REQUIRE_SERVERS="${IDEM_REQUIRE_SERVERS:-1}"

for s in $stages; do
  case "$s" in
    ci | asan | tsan | fuzz | lint) ;;
    *)
      echo "test.sh: unknown stage '$s' (known: ci asan tsan fuzz lint)" >&2
      exit 2
      ;;
  esac
done

log_dir="$build_root/logs"
mkdir -p "$log_dir"

banner() { printf '\n==================== %s ====================\n' "$*"; }
run() {
  echo "+ $*"
  "$@"
}

# ---------------------------------------------------------------------------
# Results: each stage writes one line of detail to $log_dir/<stage>.detail and
# its check counts ("passed failed") to $log_dir/<stage>.counts.

note() { printf '%s\n' "$*" >"$log_dir/$current_stage.detail"; }
count() { echo "$1 $2" >"$log_dir/$current_stage.counts"; }

# run_ctest <build-dir> [ctest args...]: runs ctest, keeps its summary line.
run_ctest() {
  local dir="$1"
  shift
  local log="$log_dir/$current_stage.ctest.log"
  # ctest prints "100% tests passed, 0 tests failed out of N" itself.
  run "${ctest_wrapper[@]}" ctest --test-dir "$dir" --output-on-failure --no-tests=error -j "$jobs" "$@" 2>&1 |
    tee "$log"
  local rc=${PIPESTATUS[0]}
  local summary
  summary="$(grep -E 'tests passed, [0-9]+ tests? failed out of [0-9]+' "$log" | tail -n 1)"
  if [[ -n "$summary" ]]; then
    note "$summary"
    local total failed
    total="$(sed -E 's/.* out of ([0-9]+).*/\1/' <<<"$summary")"
    failed="$(sed -E 's/.*, ([0-9]+) tests? failed.*/\1/' <<<"$summary")"
    count "$((total - failed))" "$failed"
  else
    note "ctest produced no summary (exit $rc)"
    count 0 1
  fi
  return "$rc"
}

# configure <preset> <build-dir> [cmake args...]
configure() {
  local preset="$1" dir="$2"
  shift 2
  if ! run cmake --preset "$preset" -B "$dir" "$@" "${extra_cmake_args[@]}"; then
    note "configure failed (preset $preset)"
    count 0 1
    return 1
  fi
}

# build <build-dir> [targets...]
build() {
  local dir="$1"
  shift
  local targets=()
  [[ $# -gt 0 ]] && targets=(--target "$@")
  if ! run cmake --build "$dir" -j "$jobs" "${targets[@]}"; then
    note "build failed"
    count 0 1
    return 1
  fi
}

# test_targets <build-dir> <label-regex>: the executables of the matching
# tests, so that sanitizer trees build nothing else (an idem_add_test target
# is named like its executable). Before the first build ctest reports them as
# "Could not find executable <path>", afterwards as "Test command: <path>".
test_targets() {
  local dir="$1" labels="$2" known
  known="$(cmake --build "$dir" -- -t targets all 2>/dev/null | sed -E 's/:.*//')"
  ctest --test-dir "$dir" -N -V -L "$labels" 2>/dev/null |
    sed -nE 's/^.*Test command: ([^ ]+).*$/\1/p; s/^Could not find executable ([^ ]+)$/\1/p' |
    while read -r exe; do
      local name
      name="$(basename "$exe")"
      grep -qxF "$name" <<<"$known" && echo "$name"
    done | sort -u
}

ctest_wrapper=()

# ---------------------------------------------------------------------------
# Stages

stage_ci() {
  local dir="$build_root/ci"
  configure ci "$dir" -DIDEM_WERROR=ON || return 1
  build "$dir" || return 1
  run_ctest "$dir" --timeout 300
}

# sanitizer_stage <preset> <build-dir>: builds only the unit and conformance
# test binaries (and what they link), then runs them.
sanitizer_stage() {
  local preset="$1" dir="$2"
  configure "$preset" "$dir" -DIDEM_WERROR=ON || return 1
  local targets
  mapfile -t targets < <(test_targets "$dir" 'unit|conformance')
  if [[ ${#targets[@]} -eq 0 ]]; then
    echo "test.sh: no unit or conformance test found in $dir; building everything"
  fi
  build "$dir" "${targets[@]}" || return 1
  run_ctest "$dir" --timeout 600 -L 'unit|conformance'
}

stage_asan() {
  export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1}"
  export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
  sanitizer_stage asan-ubsan "$build_root/asan-ubsan"
}

# Some kernels use more ASLR entropy than the TSan runtime of GCC 12 and
# clang 14 can map around ("FATAL: ThreadSanitizer: unexpected memory
# mapping"). Then the tests run with ASLR off (setarch -R), which only affects
# these processes.
tsan_needs_setarch() {
  case "${IDEM_TSAN_SETARCH:-}" in
    1) return 0 ;;
    0) return 1 ;;
  esac
  local dir="$1" cxx
  cxx="$(sed -nE 's/^CMAKE_CXX_COMPILER:[A-Z]+=(.*)$/\1/p' "$dir/CMakeCache.txt")"
  mkdir -p "$dir/tsan-probe"
  printf '#include <thread>\nint v;\nint main() { std::thread t([] { v = 1; }); t.join(); return v - 1; }\n' \
    >"$dir/tsan-probe/probe.cpp"
  if ! "${cxx:-c++}" -fsanitize=thread -pthread "$dir/tsan-probe/probe.cpp" -o "$dir/tsan-probe/probe" 2>/dev/null; then
    return 1  # cannot tell; the tests will show
  fi
  local out
  if out="$("$dir/tsan-probe/probe" 2>&1)"; then return 1; fi
  if grep -q "unexpected memory mapping" <<<"$out" && setarch "$(uname -m)" -R "$dir/tsan-probe/probe" >/dev/null 2>&1; then
    return 0
  fi
  return 1
}

stage_tsan() {
  local dir="$build_root/tsan"
  export TSAN_OPTIONS="${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1}"
  configure tsan "$dir" -DIDEM_WERROR=ON || return 1
  if tsan_needs_setarch "$dir"; then
    if [[ "${IDEM_TSAN_SETARCH:-}" == 1 ]]; then
      echo "test.sh: IDEM_TSAN_SETARCH=1: running the TSan tests with ASLR off (setarch -R)"
    else
      echo "test.sh: TSan cannot map its shadow memory with this kernel's ASLR; running the TSan tests under setarch -R"
    fi
    ctest_wrapper=(setarch "$(uname -m)" -R)
  fi
  sanitizer_stage tsan "$dir"
  local rc=$?
  ctest_wrapper=()
  return "$rc"
}

stage_fuzz() {
  local dir="$build_root/fuzz"
  configure fuzz "$dir" || return 1
  build "$dir" idem_fuzzers || return 1
  local list="$dir/fuzz/fuzzers.txt"
  if [[ ! -s "$list" ]]; then
    note "no fuzz targets listed in $list"
    count 0 1
    return 1
  fi
  export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}"
  export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
  local passed=0 failed=0 details=() target
  while read -r target; do
    [[ -n "$target" ]] || continue
    local work="$dir/fuzz-work/$target"
    mkdir -p "$work/corpus" "$work/artifacts"
    local args=(-max_total_time="$fuzz_seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
      -artifact_prefix="$work/artifacts/")
    [[ -f "fuzz/$target.dict" ]] && args+=(-dict="fuzz/$target.dict")
    # New inputs go to the work corpus; the committed seeds are only read.
    local seeds=()
    [[ -d "fuzz/corpus/$target" ]] && seeds=("fuzz/corpus/$target")
    banner "fuzz: $target (${fuzz_seconds}s)"
    run "$dir/fuzz/$target" "${args[@]}" "$work/corpus" "${seeds[@]}" 2>&1 | tee "$work/run.log"
    local rc=${PIPESTATUS[0]} runs
    runs="$(sed -nE 's/^stat::number_of_executed_units: *([0-9]+).*/\1/p' "$work/run.log" | tail -n 1)"
    if [[ $rc -eq 0 ]]; then
      passed=$((passed + 1))
      details+=("$target ok (${runs:-?} runs)")
    else
      failed=$((failed + 1))
      details+=("$target FAILED (exit $rc, reproducer in $work/artifacts/)")
    fi
  done <"$list"
  local joined
  joined="$(printf '%s; ' "${details[@]}")"
  note "${joined%; }"
  count "$passed" "$failed"
  [[ $failed -eq 0 ]]
}

stage_lint() {
  local dirs=() d
  for d in include src cli tests bench examples fuzz bindings; do [[ -d "$d" ]] && dirs+=("$d"); done
  local files=()
  mapfile -t files < <(find "${dirs[@]}" -type f \( -name '*.h' -o -name '*.hpp' -o -name '*.cpp' -o -name '*.cc' \) |
    LC_ALL=C sort)
  if [[ ${#files[@]} -eq 0 ]]; then
    note "no C++ files found"
    count 0 1
    return 1
  fi
  local out
  out="$(clang-format --dry-run -Werror "${files[@]}" 2>&1)"
  local rc=$?
  if [[ $rc -eq 0 ]]; then
    note "${#files[@]} files formatted"
    count 1 0
    return 0
  fi
  printf '%s\n' "$out" | head -n 200
  local bad=()
  mapfile -t bad < <(grep -oE '^[^:]+:[0-9]+:[0-9]+: error' <<<"$out" | cut -d: -f1 | sort -u)
  echo "Files that need formatting (run tools/format.sh):"
  printf '  %s\n' "${bad[@]}"
  note "${#bad[@]} of ${#files[@]} files need clang-format (run tools/format.sh)"
  count 0 1
  return 1
}

# ---------------------------------------------------------------------------

overall_start=$SECONDS
banner "dependencies"
if ! ./tools/install-deps.sh; then
  echo "test.sh: installing dependencies failed" >&2
  exit 1
fi

declare -A status=() elapsed=()
for current_stage in $stages; do
  rm -f "$log_dir/$current_stage.detail" "$log_dir/$current_stage.counts"
  banner "stage $current_stage"
  start=$SECONDS
  # A subshell keeps one stage's exports (sanitizer options) out of the next.
  (stage_"$current_stage") 2>&1 | tee "$log_dir/$current_stage.log"
  rc=${PIPESTATUS[0]}
  elapsed[$current_stage]=$((SECONDS - start))
  if [[ $rc -eq 0 ]]; then status[$current_stage]=PASS; else status[$current_stage]=FAIL; fi
done

banner "summary"
printf '%-6s %-6s %7s  %s\n' stage result time detail
total_passed=0
total_failed=0
any_failed=0
for s in $stages; do
  detail="$(cat "$log_dir/$s.detail" 2>/dev/null || echo "-")"
  printf '%-6s %-6s %6ss  %s\n' "$s" "${status[$s]}" "${elapsed[$s]}" "$detail"
  read -r p f <"$log_dir/$s.counts" 2>/dev/null || { p=0; f=0; }
  if [[ "${status[$s]}" == FAIL && $f -eq 0 ]]; then f=1; fi
  total_passed=$((total_passed + p))
  total_failed=$((total_failed + f))
  [[ "${status[$s]}" == PASS ]] || any_failed=1
done
echo "logs: $log_dir/<stage>.log    total time: $((SECONDS - overall_start))s"
# Counts ctest tests of every ctest stage, plus one per fuzz target and lint.
echo "checks: $total_passed passed, $total_failed failed"
exit "$any_failed"
