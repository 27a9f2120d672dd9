#!/usr/bin/env bash
# The README's first command: install, build, and run Corral's control plane
# on an embedded PostgreSQL. Arguments go to `corral server`.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
./scripts/build.sh
exec ./build/cmd/corral server "$@"
