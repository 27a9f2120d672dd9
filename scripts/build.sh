#!/usr/bin/env bash
# Configures and builds Corral into ./build (ccache is used when installed).
# Extra arguments go to cmake's configure step, e.g. -DCORRAL_ASAN=ON.
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${CORRAL_BUILD_DIR:-build}
jobs=${CORRAL_JOBS:-$(nproc)}
# llama.cpp source for the llamacpp engine (idempotent; CORRAL_NO_LLAMACPP=1 skips it,
# and the project then builds without that engine).
if [ "${CORRAL_NO_LLAMACPP:-0}" != 1 ]; then
  ./scripts/fetch_llama.sh || echo "build.sh: llama.cpp not fetched; building without the llamacpp engine" >&2
fi
cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE="${CMAKE_BUILD_TYPE:-RelWithDebInfo}" "$@" >/dev/null
cmake --build "$build_dir" -j "$jobs"
