#!/usr/bin/env bash
# tools/format.sh — applies .clang-format in place to every C++ file of the
# tree (the lint stage of tools/test.sh checks the same files).
#   tools/format.sh            # everything
#   tools/format.sh FILE...    # only these
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [[ $# -gt 0 ]]; then
  exec clang-format -i "$@"
fi
dirs=()
for d in include src cli tests bench examples fuzz bindings; do [[ -d "$d" ]] && dirs+=("$d"); done
find "${dirs[@]}" -type f \( -name '*.h' -o -name '*.hpp' -o -name '*.cpp' -o -name '*.cc' \) -print0 |
  xargs -0 -r clang-format -i
