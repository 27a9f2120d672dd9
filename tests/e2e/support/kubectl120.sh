#!/usr/bin/env bash
# Prints the path of Debian 12's kubectl (package kubernetes-client, version
# 1.20.5+really1.20.2, i.e. kubectl v1.20.2), unpacked privately into a cache
# directory; downloads and unpacks it on first use.
#
# Never installs it: `apt-get download` + `dpkg -x` only, so the image's
# kubectl (a dispatcher that picks 1.29-1.33 by the server's /version) stays
# the one on PATH. `apt-get update` runs only when the download fails (stale
# or missing package lists). Safe to run concurrently: the unpacked tree is
# published with one rename.
#
# Environment: CORRAL_CACHE (default ~/.cache/corral); the binary ends up in
# $CORRAL_CACHE/kubectl-1.20/root/usr/bin/kubectl.
# Exit status: 0 and the path on stdout, or non-zero with the reason on stderr.
set -euo pipefail

cache="${CORRAL_CACHE:-$HOME/.cache/corral}/kubectl-1.20"
kubectl="$cache/root/usr/bin/kubectl"

if [[ -x "$kubectl" ]]; then
  echo "$kubectl"
  exit 0
fi

mkdir -p "$cache"
work="$(mktemp -d "$cache/tmp.XXXXXX")"
trap 'rm -rf "$work"' EXIT

download() { (cd "$work" && apt-get download kubernetes-client) >&2; }
if ! download; then
  echo "kubectl120: apt-get download failed; refreshing package lists and retrying" >&2
  apt-get update >&2
  download
fi

deb=("$work"/kubernetes-client_*.deb)
if [[ ! -f "${deb[0]}" ]]; then
  echo "kubectl120: apt-get download produced no kubernetes-client .deb" >&2
  exit 1
fi
case "$(basename "${deb[0]}")" in
  kubernetes-client_1.20.*) ;;
  *) echo "kubectl120: expected kubernetes-client 1.20, got $(basename "${deb[0]}")" >&2; exit 1 ;;
esac

dpkg -x "${deb[0]}" "$work/root"
if [[ ! -x "$work/root/usr/bin/kubectl" ]]; then
  echo "kubectl120: ${deb[0]} has no usr/bin/kubectl" >&2
  exit 1
fi
# Publish atomically; if another run got there first, keep theirs.
mv -T "$work/root" "$cache/root" 2>/dev/null || [[ -x "$kubectl" ]]
echo "$kubectl"
