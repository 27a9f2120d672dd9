#!/usr/bin/env bash
# Fetches the llama.cpp source into third_party/llama.cpp for the llamacpp
# engine (worker/llamacpp.cmake). Debian 12 packages no llama.cpp; the npm
# package node-llama-cpp ships the exact llama.cpp source it was built against
# as a git bundle (package/llama/gitRelease.bundle), so we take it from there.
#
# Idempotent and quiet: does nothing when third_party/llama.cpp already holds a
# checkout; the npm tarball is cached in ${CORRAL_CACHE:-$HOME/.cache/corral}.
# Each network step is bounded in time (CORRAL_FETCH_TIMEOUT seconds, default 300).
#
# Usage: scripts/fetch_llama.sh [--force]   (--force: re-clone the checkout)
set -euo pipefail

readonly NODE_LLAMA_CPP_VERSION="3.22.1"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="${root}/third_party/llama.cpp"
cache="${CORRAL_CACHE:-${HOME}/.cache/corral}/node-llama-cpp-${NODE_LLAMA_CPP_VERSION}"
timeout_s="${CORRAL_FETCH_TIMEOUT:-300}"

if [ "${1:-}" = "--force" ]; then
  rm -rf "${dest}"
fi
if [ -f "${dest}/include/llama.h" ] && [ -f "${dest}/CMakeLists.txt" ]; then
  exit 0
fi

for tool in npm git tar timeout; do
  command -v "${tool}" >/dev/null || { echo "fetch_llama.sh: ${tool} is required" >&2; exit 1; }
done

bundle="${cache}/package/llama/gitRelease.bundle"
if [ ! -f "${bundle}" ]; then
  mkdir -p "${cache}"
  tgz="${cache}/node-llama-cpp-${NODE_LLAMA_CPP_VERSION}.tgz"
  if [ ! -f "${tgz}" ]; then
    # npm pack writes the tarball into the current directory; --ignore-scripts
    # keeps it from running anything from the package.
    if ! (cd "${cache}" && timeout "${timeout_s}" npm pack --silent --ignore-scripts \
            "node-llama-cpp@${NODE_LLAMA_CPP_VERSION}" >/dev/null 2>"${cache}/npm.log"); then
      echo "fetch_llama.sh: npm pack node-llama-cpp@${NODE_LLAMA_CPP_VERSION} failed (see ${cache}/npm.log)" >&2
      exit 1
    fi
  fi
  tar -xzf "${tgz}" -C "${cache}" package/llama/gitRelease.bundle
  [ -f "${bundle}" ] || { echo "fetch_llama.sh: ${tgz} has no package/llama/gitRelease.bundle" >&2; exit 1; }
fi

# Clone into a temporary sibling and rename, so an interrupted run never leaves
# a half checkout that the idempotence check above would accept.
mkdir -p "$(dirname "${dest}")"
tmp="$(mktemp -d "${dest}.tmp.XXXXXX")"
trap 'rm -rf "${tmp}"' EXIT
timeout "${timeout_s}" git clone --quiet "${bundle}" "${tmp}/llama.cpp" 2>"${tmp}/git.log" || {
  cat "${tmp}/git.log" >&2
  echo "fetch_llama.sh: git clone of ${bundle} failed" >&2
  exit 1
}
rm -rf "${dest}"
mv "${tmp}/llama.cpp" "${dest}"
rev="$(git -C "${dest}" describe --tags --always 2>/dev/null || true)"
echo "fetch_llama.sh: llama.cpp ${rev} in ${dest}" >&2
