#!/usr/bin/env bash
# API benchmark: wrk against `corral server` (plain HTTP on loopback) beside a
# bare cpprestsdk listener returning a fixed body of the same size, measured in
# the same run; then watch fan-out with bench/watch_fanout. Prints one table.
#
#   bench/api_bench.sh [--build-dir DIR] [--duration S] [--connections N]
#                      [--threads T] [--pool-max N] [--watches N] [--writes N]
#                      [--no-build] [--keep]
#
# What it runs (each wrk for --duration seconds, after a 3 s warm-up per
# server): GET one Model; LIST 1,000 Models; create (POST, unique names);
# update (JSON merge patch of a label on 200 pre-created Models). The bare
# listener answers GET with the byte-identical GET (or LIST) body corral
# returned, and answers POST/PATCH with that body after reading the request
# body, so every row has an HTTP-only reference. Everything is started on free
# loopback ports and stopped on exit (trap); every wait is bounded.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

build_dir=build
duration=10
connections=50
threads=1
pool_max=32
watches=1000
writes=100
do_build=1
keep=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --build-dir) build_dir=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --connections) connections=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --pool-max) pool_max=$2; shift 2 ;;
    --watches) watches=$2; shift 2 ;;
    --writes) writes=$2; shift 2 ;;
    --no-build) do_build=0; shift ;;
    --keep) keep=1; shift ;;
    -h | --help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "api_bench: unknown argument $1" >&2; exit 2 ;;
  esac
done

log() { echo "api_bench: $*" >&2; }

if ! command -v wrk >/dev/null; then
  log "installing wrk (Debian package)"
  if [[ $(id -u) -eq 0 ]]; then apt-get install -y wrk >/dev/null; else sudo apt-get install -y wrk >/dev/null; fi
fi
for tool in curl wrk; do
  command -v "$tool" >/dev/null || { log "$tool is required"; exit 1; }
done

if [[ $do_build -eq 1 ]]; then
  if [[ ! -f $build_dir/CMakeCache.txt ]]; then
    cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCORRAL_BUILD_BENCH=ON >/dev/null
  fi
  cmake --build "$build_dir" --target corral bare_listener watch_fanout -j"$(nproc)" >/dev/null
fi
corral_bin=$build_dir/cmd/corral
bare_bin=$build_dir/bench/bare_listener
fanout_bin=$build_dir/bench/watch_fanout
for b in "$corral_bin" "$bare_bin" "$fanout_bin"; do
  [[ -x $b ]] || { log "missing $b (build it, or drop --no-build)"; exit 1; }
done

# 1,000 watches plus wrk's connections need more than 1,024 descriptors, in
# the server and in the fan-out client (both inherit this).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

work=$(mktemp -d /tmp/corral-api-bench.XXXXXX)
chmod 755 "$work"  # the embedded PostgreSQL runs as an unprivileged user under root
pids=()
server_pid=
cleanup() {
  local rc=$?
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  # corral stops its embedded PostgreSQL on SIGTERM; give it up to 30 s.
  for _ in $(seq 1 300); do
    local alive=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [[ $alive -eq 0 ]] && break
    sleep 0.1
  done
  for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  # If corral had to be killed, its PostgreSQL is still running: stop it too.
  local pm=$work/data/pg/postmaster.pid
  if [[ -f $pm ]]; then
    local pg_pid
    pg_pid=$(head -1 "$pm")
    if [[ -n $pg_pid ]]; then kill -QUIT "$pg_pid" 2>/dev/null || true; fi
  fi
  if [[ $keep -eq 1 ]]; then log "kept $work"; else rm -rf "$work"; fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A loopback port nothing listens on (bounded tries; a small race is accepted).
free_port() {
  local p
  for _ in $(seq 1 200); do
    p=$((20000 + RANDOM % 40000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return 0; fi
  done
  log "no free port found"
  return 1
}

# Waits (bounded) until URL answers 2xx.
wait_http() {
  local url=$1 what=$2 seconds=$3
  for _ in $(seq 1 $((seconds * 10))); do
    curl -sf -o /dev/null --max-time 1 "$url" && return 0
    sleep 0.1
  done
  log "$what did not come up within ${seconds}s"
  return 1
}

corral_port=$(free_port)
log "starting corral server on 127.0.0.1:$corral_port (pool-max $pool_max)"
"$corral_bin" server --data-dir "$work/data" --listen "127.0.0.1:$corral_port" --insecure-http \
  --pool-max "$pool_max" --max-watches-per-user $((watches + 100)) --log-level warn \
  >"$work/server.log" 2>&1 &
server_pid=$!
pids+=("$server_pid")
if ! wait_http "http://127.0.0.1:$corral_port/readyz" "corral server" 90; then
  tail -20 "$work/server.log" >&2
  exit 1
fi
token=$(sed -n 's/^ *token: *"\{0,1\}\([^"]*\)"\{0,1\} *$/\1/p' "$work/data/admin.kubeconfig" | head -1)
[[ -n $token ]] || { log "no token in $work/data/admin.kubeconfig"; exit 1; }

base=http://127.0.0.1:$corral_port
models() { echo "$base/apis/corral.dev/v1alpha1/namespaces/$1/models"; }
model_body() { printf '{"apiVersion":"corral.dev/v1alpha1","kind":"Model","metadata":{"name":"%s"},"spec":{"engine":"sim","source":"sim://bench"}}' "$1"; }

# Creates Models NAME_PREFIX0..N-1 in NAMESPACE with one keep-alive curl.
create_models() {
  local ns=$1 prefix=$2 count=$3 cfg=$work/create-$1.curl i
  : >"$cfg"
  for ((i = 0; i < count; i++)); do
    {
      [[ $i -gt 0 ]] && echo "next"
      echo "url = \"$(models "$ns")\""
      echo "header = \"Authorization: Bearer $token\""
      echo "header = \"Content-Type: application/json\""
      echo "data = $(model_body "$prefix$i")"
      echo "output = /dev/null"
      echo "write-out = \"%{http_code}\\n\""
    } >>"$cfg"
  done
  local codes
  codes=$(timeout 300 curl -s --max-time 240 -K "$cfg")
  local bad
  bad=$(grep -cv '^201$' <<<"$codes" || true)
  if [[ $bad -ne 0 ]]; then
    log "creating $count models in $ns: $bad answers were not 201: $(sort <<<"$codes" | uniq -c | tr '\n' ' ')"
    return 1
  fi
}

log "creating fixtures: 2 + 1,000 + 200 Models"
# Namespaces, where the server has them (404: it serves no Namespace kind and
# namespaced objects need none).
for ns in bench list update create fanout; do
  code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 -H "Authorization: Bearer $token" \
    -H 'Content-Type: application/json' -X POST "$base/api/v1/namespaces" \
    -d "{\"apiVersion\":\"v1\",\"kind\":\"Namespace\",\"metadata\":{\"name\":\"$ns\"}}")
  [[ $code == 201 || $code == 409 || $code == 404 ]] || { log "creating namespace $ns: HTTP $code"; exit 1; }
done
create_models bench m 2  # m0, m1: GET reads m1
create_models list l- 1000
create_models update u- 200

get_url=$(models bench)/m1
list_url=$(models list)
curl -sf --max-time 10 -H "Authorization: Bearer $token" -H 'Accept: application/json' \
  -o "$work/get.json" "$get_url"
curl -sf --max-time 30 -H "Authorization: Bearer $token" -H 'Accept: application/json' \
  -o "$work/list.json" "$list_url"
list_items=$(grep -o '"kind":"Model"' "$work/list.json" | wc -l)
[[ $list_items -eq 1000 ]] || { log "LIST returned $list_items Models, expected 1000"; exit 1; }

# start_bare BODY_FILE: starts a bare listener; its port is left in $bare_port.
# (Not called in $(...): the pid must be recorded in this shell for cleanup.)
start_bare() {
  bare_port=$(free_port)
  "$bare_bin" --listen "127.0.0.1:$bare_port" --body-file "$1" >"$work/bare-$bare_port.log" 2>&1 &
  pids+=("$!")
  wait_http "http://127.0.0.1:$bare_port/" "bare listener" 20
}
start_bare "$work/get.json"
bare_get_port=$bare_port
start_bare "$work/list.json"
bare_list_port=$bare_port
log "bare listeners on $bare_get_port (GET body $(stat -c %s "$work/get.json") B) and $bare_list_port (LIST body $(stat -c %s "$work/list.json") B)"

export CORRAL_WRK_DIR=$repo/bench/wrk CORRAL_WRK_THREADS=$threads CORRAL_RUN_ID=$$
export CORRAL_UPDATE_OBJECTS=200 CORRAL_UPDATE_PREFIX=u-

# run_wrk NAME SECONDS SCRIPT URL TOKEN: runs wrk and leaves its output in
# $work/NAME.txt; the RESULT line is parsed later.
run_wrk() {
  local name=$1 seconds=$2 script=$3 url=$4 tok=$5
  CORRAL_TOKEN=$tok timeout $((seconds + 60)) wrk -t"$threads" -c"$connections" -d"${seconds}s" \
    --latency --timeout 5s -s "$repo/bench/wrk/$script" "$url" >"$work/$name.txt" 2>&1 || {
    log "wrk $name failed: $(tail -3 "$work/$name.txt")"
    return 1
  }
  grep -q '^RESULT ' "$work/$name.txt" || { log "wrk $name printed no RESULT"; return 1; }
}
field() { sed -n "s/^RESULT .*\\b$2=\\([0-9.]*\\).*/\\1/p" "$work/$1.txt" | head -1; }

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
log "load average before: $load_before; wrk -t$threads -c$connections -d${duration}s --latency"
bare_base=http://127.0.0.1:$bare_get_port/apis/corral.dev/v1alpha1/namespaces
bare_list_url=http://127.0.0.1:$bare_list_port/apis/corral.dev/v1alpha1/namespaces/list/models

run_wrk warm-bare 3 get.lua "$bare_base/bench/models/m1" ""
run_wrk warm-corral 3 get.lua "$get_url" "$token"
# Bare first, corral straight after, per row: drift on the shared machine hits
# both sides of a ratio alike.
log "GET"
run_wrk get-bare "$duration" get.lua "$bare_base/bench/models/m1" ""
run_wrk get-corral "$duration" get.lua "$get_url" "$token"
log "LIST 1,000"
run_wrk list-bare "$duration" get.lua "$bare_list_url" ""
run_wrk list-corral "$duration" get.lua "$list_url" "$token"
log "create"
run_wrk create-bare "$duration" create.lua "$bare_base/create/models" ""
run_wrk create-corral "$duration" create.lua "$(models create)" "$token"
log "update (merge patch)"
run_wrk update-bare "$duration" update.lua "$bare_base/update/models" ""
run_wrk update-corral "$duration" update.lua "$(models update)" "$token"
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

log "watch fan-out: $watches watches, $writes writes"
fanout_ok=1
timeout 600 "$fanout_bin" --port "$corral_port" --token "$token" --namespace fanout \
  --watches "$watches" --writes "$writes" --timeout-s 500 >"$work/fanout.txt" 2>&1 || fanout_ok=0
[[ $fanout_ok -eq 1 ]] || log "watch_fanout failed: $(tail -5 "$work/fanout.txt")"

# Table.
ms() { awk -v us="$1" 'BEGIN { if (us == "") print "-"; else printf "%.2f", us / 1000 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b == 0) print "-"; else printf "%.2f", a / b }'; }
echo
echo "corral API benchmark: wrk -t$threads -c$connections -d${duration}s --latency, loopback, plain HTTP;"
echo "corral server --pool-max $pool_max; $(nproc) CPUs; load average $load_before before, $load_after after"
echo
printf '| %-10s | %12s | %7s | %7s | %12s | %7s | %7s | %5s | %s |\n' \
  test "corral req/s" "p50 ms" "p99 ms" "bare req/s" "p50 ms" "p99 ms" ratio "corral errors"
echo '|------------|-------------:|--------:|--------:|-------------:|--------:|--------:|------:|---|'
for row in get list create update; do
  c=$row-corral b=$row-bare
  label=$row
  [[ $row == list ]] && label="list 1000"
  printf '| %-10s | %12s | %7s | %7s | %12s | %7s | %7s | %5s | %s |\n' "$label" \
    "$(field "$c" rps)" "$(ms "$(field "$c" p50_us)")" "$(ms "$(field "$c" p99_us)")" \
    "$(field "$b" rps)" "$(ms "$(field "$b" p50_us)")" "$(ms "$(field "$b" p99_us)")" \
    "$(ratio "$(field "$c" rps)" "$(field "$b" rps)")" \
    "non-2xx $(field "$c" non2xx), failed $(field "$c" failed)"
done
echo
get_ratio=$(ratio "$(field get-corral rps)" "$(field get-bare rps)")
get_p99=$(ms "$(field get-corral p99_us)")
verdict=$(awk -v r="$get_ratio" -v p="$get_p99" 'BEGIN { print ((r >= 0.6 && p < 5) ? "MET" : "NOT MET") }')
echo "GET target (>= 0.6 x bare, p99 < 5 ms): $verdict (ratio $get_ratio, p99 $get_p99 ms)"
echo
if [[ $fanout_ok -eq 1 ]]; then
  grep -v '^RESULT' "$work/fanout.txt" | sed 's/^/watch fan-out: /'
else
  echo "watch fan-out: FAILED ($(tail -1 "$work/fanout.txt"))"
fi
echo
echo "wrk outputs, server log: $work$([[ $keep -eq 1 ]] || echo ' (removed on exit; --keep keeps them)')"
