#!/usr/bin/env bash
# llama.cpp through the worker's HTTP API vs llama.h driven directly, same
# model, same run: tokens/s of N concurrent streaming chat requests sent to
# `corral worker` (OpenAI /v1/chat/completions, SSE) against
# bench/llamacpp_bench's raw llama.h loop with the same slots, requests and
# tokens. Prints both and the ratio (target >= 0.9: the worker adds little).
#
#   bench/worker_llamacpp_bench.sh [--build-dir DIR] [--n-embd 512] [--n-layer 8]
#                                   [--parallel 4] [--sequences 8] [--max-tokens 128]
# Everything runs on loopback and is stopped on exit; every wait is bounded.
set -euo pipefail
cd "$(dirname "$0")/.."
build=build n_embd=512 n_layer=8 parallel=4 sequences=8 max_tokens=128
while [ $# -gt 0 ]; do
  case $1 in
    --build-dir) build=$2; shift 2 ;;
    --n-embd) n_embd=$2; shift 2 ;;
    --n-layer) n_layer=$2; shift 2 ;;
    --parallel) parallel=$2; shift 2 ;;
    --sequences) sequences=$2; shift 2 ;;
    --max-tokens) max_tokens=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
corral=$build/cmd/corral gen=$build/worker/corral_gguf_gen raw=$build/bench/llamacpp_bench
for b in "$corral" "$gen" "$raw"; do [ -x "$b" ] || { echo "missing $b (build with llama.cpp)" >&2; exit 1; }; done
tmp=$(mktemp -d /tmp/corral-llama-bench.XXXXXX)
chmod 755 "$tmp"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }

"$gen" --out "$tmp/model.gguf" --n-embd "$n_embd" --n-layer "$n_layer" >/dev/null
echo "model: n_embd $n_embd, $n_layer layers ($(stat -c %s "$tmp/model.gguf") bytes); $sequences requests x $max_tokens tokens, $parallel slots"

# 1. llama.h directly (the reference), on the same model file.
raw_tps=$("$raw" --model "$tmp/model.gguf" --parallel "$parallel" --sequences "$sequences" \
  --max-tokens "$max_tokens" --rounds 3 2>/dev/null | sed -n 's/.*median: raw llama.h \([0-9.]*\) tok\/s.*/\1/p')

# 2. The same through corral server + worker over HTTP.
sp=$(port) wp=$(port)
"$corral" server --data-dir "$tmp/data" --listen "127.0.0.1:$sp" --insecure-http --log-level warn >"$tmp/server.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 300); do [ -s "$tmp/data/admin.kubeconfig" ] && break; sleep 0.1; done
token=$(awk '/token:/ {print $2}' "$tmp/data/admin.kubeconfig")
"$corral" token add --data-dir "$tmp/data" --user b1 --role node >"$tmp/node.token"
sleep 1.2  # the server re-reads its token file at most once a second
"$corral" worker --server "http://127.0.0.1:$sp" --token-file "$tmp/node.token" --name b1 \
  --listen "127.0.0.1:$wp" --log-level warn >"$tmp/worker.log" 2>&1 &
pids+=($!)
api() { curl -sf -H "Authorization: Bearer $token" -H 'Content-Type: application/json' "$@"; }
G="http://127.0.0.1:$sp/apis/corral.dev/v1alpha1/namespaces/default"
for _ in $(seq 1 100); do api "http://127.0.0.1:$sp/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
api -X POST "$G/models" -d "{\"apiVersion\":\"corral.dev/v1alpha1\",\"kind\":\"Model\",\"metadata\":{\"name\":\"bench\"},\"spec\":{\"engine\":\"llamacpp\",\"source\":\"file://$tmp/model.gguf\",\"contextLength\":$(( (max_tokens + 64) * parallel )),\"llamacpp\":{\"parallel\":$parallel}}}" >/dev/null
for _ in $(seq 1 100); do api -X POST "$G/replicas" -d '{"apiVersion":"corral.dev/v1alpha1","kind":"Replica","metadata":{"name":"b"},"spec":{"modelRef":{"name":"bench"},"nodeName":"b1","servedName":"bench"}}' >/dev/null 2>&1 && break; sleep 0.2; done
for _ in $(seq 1 300); do [ "$(api "$G/replicas/b" | jq -r .status.phase)" = Ready ] && break; sleep 0.2; done
[ "$(api "$G/replicas/b" | jq -r .status.phase)" = Ready ] || { echo "replica not Ready" >&2; tail "$tmp/worker.log" >&2; exit 1; }
body='{"model":"bench","stream":true,"messages":[{"role":"user","content":"Tell me a story."}],"max_tokens":'$max_tokens',"temperature":0.8,"stream_options":{"include_usage":true}}'
best=0
for round in 1 2 3; do
  start=$(date +%s.%N)
  for i in $(seq 1 "$sequences"); do
    curl -sN --max-time 300 "http://127.0.0.1:$wp/v1/chat/completions" -H 'Content-Type: application/json' -d "$body" >"$tmp/r$i.out" &
  done
  wait $(jobs -p | grep -v -e "${pids[0]}" -e "${pids[1]}") 2>/dev/null || true
  end=$(date +%s.%N)
  tokens=$(cat "$tmp"/r*.out | grep -o '"completion_tokens":[0-9]*' | awk -F: '{s+=$2} END {print s+0}')
  tps=$(awk -v t="$tokens" -v a="$start" -v b="$end" 'BEGIN {printf "%.1f", t / (b - a)}')
  echo "round $round: $tokens tokens in $(awk -v a="$start" -v b="$end" 'BEGIN {printf "%.2f", b - a}') s = $tps tok/s through HTTP"
  best=$(awk -v x="$best" -v y="$tps" 'BEGIN {print (y > x) ? y : x}')
done
echo "llama.h directly: ${raw_tps:-?} tok/s; through the worker's HTTP API: $best tok/s (best of 3)"
[ -n "$raw_tps" ] && awk -v h="$best" -v r="$raw_tps" 'BEGIN {printf "ratio HTTP/direct: %.2f (target >= 0.9)\n", h / r}'
