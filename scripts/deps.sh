#!/usr/bin/env bash
# Installs what Corral needs to build, test and run on Debian 12. Idempotent
# and quiet: packages already present are not touched, and apt runs only when
# something is missing.
set -euo pipefail

packages=(
  build-essential cmake pkg-config git
  libcpprest-dev libyaml-cpp-dev nlohmann-json3-dev libpqxx-dev prometheus-cpp-dev
  libspdlog-dev libssl-dev libgtest-dev libgmock-dev libbenchmark-dev libcli11-dev
  postgresql postgresql-contrib
  curl jq ca-certificates
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "deps.sh: need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
  sudo="sudo"
fi
echo "deps.sh: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq >/dev/null
# Corral runs its own private PostgreSQL clusters; the package provides the server binaries.
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
