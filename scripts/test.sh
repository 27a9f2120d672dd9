#!/usr/bin/env bash
# The README's second command: install, build, and run the whole test suite
# (unit and integration tiers; the integration tier starts its own throw-away
# PostgreSQL cluster). Arguments go to ctest, e.g. -L unit.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
./scripts/build.sh
cd "${CORRAL_BUILD_DIR:-build}"
exec ctest --output-on-failure -j "${CORRAL_TEST_JOBS:-2}" "$@"
