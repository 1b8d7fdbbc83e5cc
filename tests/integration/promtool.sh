#!/usr/bin/env bash
# promtool.sh ARGS...: runs promtool (Debian package prometheus) for the ctest
# entries of ops/. Without promtool the test is skipped (exit 77), unless
# IDEM_REQUIRE_SERVERS=1 (CI), which makes it a failure like a missing server.
set -euo pipefail
promtool="${IDEM_PROMTOOL:-$(command -v promtool || true)}"
if [[ -z "$promtool" ]]; then
  if [[ "${IDEM_REQUIRE_SERVERS:-0}" == 1 ]]; then
    echo "promtool not found (install the Debian package prometheus); IDEM_REQUIRE_SERVERS=1 makes this a failure" >&2
    exit 1
  fi
  echo "promtool not found (install the Debian package prometheus): skipped"
  exit 77
fi
exec "$promtool" "$@"
