#!/usr/bin/env bash
# CTest fixture (e2e_npm): installs tests/e2e/clientnode's pinned dependencies with
# `npm ci`, only when node_modules does not already match package-lock.json (the
# lock's SHA-256 is recorded in node_modules after a successful install).
set -euo pipefail
# Optional argument: the package directory under tests/e2e (default clientnode).
dir=$(cd "$(dirname "$0")/../${1:-clientnode}" && pwd)
cd "$dir"
want=$(sha256sum package-lock.json | cut -d' ' -f1)
stamp=node_modules/.corral-lock.sha256
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "npm_setup: node_modules matches package-lock.json; nothing to do"
  exit 0
fi
command -v npm >/dev/null || { echo "npm_setup: npm not found (Node.js >= 20 is needed)" >&2; exit 1; }
# shellcheck disable=SC2016 # JavaScript template literal, not shell
node -e 'const [maj] = process.versions.node.split(".").map(Number); if (maj < 20) { console.error(`npm_setup: Node ${process.version}; >= 20 needed`); process.exit(1); }'
timeout 600 npm ci --no-audit --no-fund --loglevel=error
echo "$want" >"$stamp"
echo "npm_setup: installed the packages of $dir/package-lock.json"
