#!/usr/bin/env bash
# CTest kubectl120_e2e: the kubectl suite again with Debian 12's kubectl 1.20, unpacked
# privately by kubectl120.sh (which prints the binary's path).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
if [ ! -x "$here/kubectl120.sh" ]; then
  echo "run_kubectl120: $here/kubectl120.sh is missing" >&2
  exit 1
fi
kubectl120=$("$here/kubectl120.sh")
if [ ! -x "$kubectl120" ]; then
  echo "run_kubectl120: kubectl120.sh printed '$kubectl120', which is not an executable" >&2
  exit 1
fi
"$kubectl120" version --client >&2 || true
KUBECTL=$kubectl120 exec "$here/../kubectl_e2e.sh"
