#!/usr/bin/env bash
# Configures and builds Corral into ./build (ccache is used when installed).
# Extra arguments go to cmake's configure step, e.g. -DCORRAL_ASAN=ON.
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${CORRAL_BUILD_DIR:-build}
jobs=${CORRAL_JOBS:-$(nproc)}
cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE="${CMAKE_BUILD_TYPE:-RelWithDebInfo}" "$@" >/dev/null
cmake --build "$build_dir" -j "$jobs"
