#!/usr/bin/env bash
# tools/install-deps.sh — installs everything Idem needs to build, test, fuzz
# and run its demo, from Debian 12 packages only. Idempotent: when every
# package is already installed it returns in well under a second without
# touching apt.
#
# Runs as root, or through sudo otherwise. Environment:
#   IDEM_SKIP_DEPS=1       skip entirely (a machine that is not Debian 12)
#   IDEM_DEPS_DRY_RUN=1    only print what would be installed
#   IDEM_EXTRA_PACKAGES    more Debian packages to install, space-separated
#
# The Debian packages of redis-server, postgresql and prometheus start system
# services on install. Idem's tests start their own servers on free ports, so during the
# install a policy-rc.d forbids service starts, and any service that apt
# started anyway is stopped again.
set -euo pipefail

if [[ "${IDEM_SKIP_DEPS:-0}" == "1" ]]; then
  echo "install-deps: IDEM_SKIP_DEPS=1, skipping"
  exit 0
fi

packages=(
  # toolchain
  g++ cmake ninja-build pkg-config make
  clang libclang-rt-14-dev clang-format  # fuzzing (libFuzzer) and the lint stage
  util-linux procps                      # setarch (TSan on high-entropy ASLR kernels), pgrep
  spin                                   # model checking docs/model/idem.pml (tools/check-model.sh)
  # libraries
  libsqlite3-dev libhiredis-dev libssl-dev nlohmann-json3-dev libcli11-dev libfmt-dev
  libgtest-dev libgmock-dev googletest libbenchmark-dev libcpp-httplib-dev
  libpq-dev libpqxx-dev libnats-dev
  # servers the integration tests start themselves
  redis-server redis-tools nats-server postgresql-15
  prometheus  # the ops kit: promtool checks the alert rules, a real Prometheus scrapes idem
  doxygen     # the API reference (target idem_docs)
  openssl ca-certificates
  curl  # the HTTP middleware's smoke test drives idem webhook-demo with a real curl
  # the Python package (bindings/python) and its tests, example and benchmark;
  # python3-redis also for redis_migration_test (the original module's consumer in the mixed fleet)
  python3-dev pybind11-dev python3-pybind11 python3-pytest
  python3-fastapi python3-uvicorn python3-httpx python3-redis
)
# Extra packages, space-separated (for a tool of your own).
read -r -a extra <<<"${IDEM_EXTRA_PACKAGES:-}"
packages+=("${extra[@]}")

# One dpkg-query for all packages: fast enough to run before every build.
# Packages dpkg has never heard of print nothing, so they count as missing.
declare -A installed=()
while read -r name status; do
  [[ "$status" == "installed" ]] && installed[${name%%:*}]=1
done < <(dpkg-query -W -f='${Package} ${db:Status-Status}\n' "${packages[@]}" 2>/dev/null || true)
missing=()
for p in "${packages[@]}"; do
  [[ -n "${installed[$p]:-}" ]] || missing+=("$p")
done

if [[ ${#missing[@]} -eq 0 ]]; then
  echo "install-deps: all ${#packages[@]} packages already installed"
  exit 0
fi

if [[ "${IDEM_DEPS_DRY_RUN:-0}" == "1" ]]; then
  echo "install-deps: would install: ${missing[*]}"
  exit 0
fi

SUDO=()
if [[ $(id -u) -ne 0 ]]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
  else
    echo "install-deps: need root (or sudo) to install: ${missing[*]}" >&2
    exit 1
  fi
fi

echo "install-deps: installing ${missing[*]}"

# Remember which services were running before, so that only what apt starts
# is stopped afterwards (a developer's own redis stays up).
services=(redis-server postgresql nats-server prometheus)
service_running() {
  case "$1" in
    redis-server) pgrep -x redis-server >/dev/null 2>&1 ;;
    postgresql) pgrep -x postgres >/dev/null 2>&1 ;;
    nats-server) pgrep -x nats-server >/dev/null 2>&1 ;;
    prometheus) pgrep -x prometheus >/dev/null 2>&1 ;;
  esac
}
declare -A was_running=()
for s in "${services[@]}"; do
  if service_running "$s"; then was_running[$s]=1; fi
done

policy=/usr/sbin/policy-rc.d
created_policy=0
cleanup() {
  if [[ $created_policy -eq 1 ]]; then "${SUDO[@]}" rm -f "$policy"; fi
}
trap cleanup EXIT
if [[ ! -e "$policy" ]]; then
  # Exit status 101 means "action forbidden": invoke-rc.d starts nothing.
  printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "$policy" >/dev/null
  "${SUDO[@]}" chmod 755 "$policy"
  created_policy=1
fi

export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"

for s in "${services[@]}"; do
  if [[ -z "${was_running[$s]:-}" ]] && service_running "$s"; then
    echo "install-deps: stopping the $s system service that the install started"
    "${SUDO[@]}" service "$s" stop >/dev/null 2>&1 || true
    if command -v systemctl >/dev/null 2>&1 && [[ -d /run/systemd/system ]]; then
      "${SUDO[@]}" systemctl disable --now "$s" >/dev/null 2>&1 || true
    fi
  fi
done

echo "install-deps: done"
