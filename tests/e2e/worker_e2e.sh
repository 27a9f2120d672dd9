#!/usr/bin/env bash
# End-to-end: `corral worker` against `corral server` (real processes, real
# PostgreSQL): node registration and lease, a Replica bound by hand goes
# Ready, OpenAI and Ollama endpoints (curl and the official npm clients),
# drain of 20 in-flight streams, failures with clear reasons, kill -9 and
# restart of the worker.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=support/lib.sh
source "$here/support/lib.sh"
e2e_init worker
e2e_start_server

G=/apis/corral.dev/v1alpha1
NS=/apis/corral.dev/v1alpha1/namespaces/default
WPORT=$(e2e_free_port)
WURL=http://127.0.0.1:$WPORT
"$CORRAL_BIN" token add --data-dir "$E2E_DATA" --user w1 --role node >"$E2E_TMP/w1.token"
start_worker() {
  local ca=()
  [ -n "$E2E_CA" ] && ca=(--ca-file "$E2E_CA")
  "$CORRAL_BIN" worker --server "$E2E_URL" "${ca[@]}" --token-file "$E2E_TMP/w1.token" --name w1 \
    --listen "127.0.0.1:$WPORT" --lease-seconds 6 --drain-grace-seconds 30 >>"$E2E_TMP/worker.log" 2>&1 &
  echo $! >"$E2E_TMP/worker.pid"  # steps run in subshells: share the pid by file
  e2e_bg_record "$!"
}
worker_pid() { cat "$E2E_TMP/worker.pid"; }
field() { api GET "$1" | jq -r "$2"; }
phase_is() { [ "$(field "$NS/replicas/$1" .status.phase)" = "$2" ]; }
replica() {  # name model [finalizer]
  local fin='[]'
  [ "${3:-}" = drain ] && fin='["corral.dev/drain"]'
  api POST "$NS/replicas" "{\"apiVersion\":\"corral.dev/v1alpha1\",\"kind\":\"Replica\",\"metadata\":{\"name\":\"$1\",\"finalizers\":$fin},\"spec\":{\"modelRef\":{\"name\":\"$2\"},\"nodeName\":\"w1\",\"servedName\":\"$2\"}}" >/dev/null
}
model() {  # name engine extra-spec-json
  api POST "$NS/models" "{\"apiVersion\":\"corral.dev/v1alpha1\",\"kind\":\"Model\",\"metadata\":{\"name\":\"$1\"},\"spec\":{\"engine\":\"$2\",\"source\":\"${4:-sim://$1}\"$3}}" >/dev/null
}

step_register() {
  start_worker
  wait_for "the worker registers its Node" 30 -- field "$G/nodes/w1" '.status.conditions[0].status'
  expect_eq "node Ready" True -- field "$G/nodes/w1" '.status.conditions[0].status'
  expect_out "node reports the sim engine" '^sim$' -- field "$G/nodes/w1" '.status.engines[].name'
  expect_out "node reports its memory" '^[1-9][0-9]+$' -- field "$G/nodes/w1" '.status.capacity.memoryBytes'
  wait_for "the worker's lease exists" 20 -- field "/apis/coordination.k8s.io/v1/namespaces/corral-node-lease/leases/w1" .spec.renewTime
  local t1 t2
  t1=$(field "/apis/coordination.k8s.io/v1/namespaces/corral-node-lease/leases/w1" .spec.renewTime)
  sleep 3
  t2=$(field "/apis/coordination.k8s.io/v1/namespaces/corral-node-lease/leases/w1" .spec.renewTime)
  expect_ok "the lease is renewed" -- test "$t1" != "$t2"
}

step_ready_and_serve() {
  model tiny sim ',"resources":{"memoryBytes":1073741824},"sim":{"loadSeconds":1,"prefillSecondsPerToken":0.0001,"decodeStepSeconds":0.01}'
  replica r1 tiny drain
  wait_for "replica r1 goes Ready" 30 -- phase_is r1 Ready
  expect_eq "r1 reports its endpoint" "$WURL" -- field "$NS/replicas/r1" .status.endpoint
  expect_out "OpenAI chat (non-stream) answers with usage" '"completion_tokens":4' -- \
    e2e_curl -sf "$WURL/v1/chat/completions" -H 'Content-Type: application/json' \
    -d '{"model":"tiny","messages":[{"role":"user","content":"hi"}],"max_tokens":4,"seed":1}'
  expect_out "OpenAI chat (stream) ends with [DONE]" '^data: \[DONE\]' -- \
    e2e_curl -sfN "$WURL/v1/chat/completions" -H 'Content-Type: application/json' \
    -d '{"model":"tiny","stream":true,"messages":[{"role":"user","content":"hi"}],"max_tokens":4}'
  expect_out "OpenAI completions" '"object":"text_completion"' -- \
    e2e_curl -sf "$WURL/v1/completions" -H 'Content-Type: application/json' -d '{"model":"tiny","prompt":"a b c","max_tokens":3}'
  expect_out "OpenAI models lists it" '"id":"tiny"' -- e2e_curl -sf "$WURL/v1/models"
  expect_out "Ollama generate streams NDJSON to done" '"done":true' -- \
    e2e_curl -sfN "$WURL/api/generate" -d '{"model":"tiny","prompt":"hello","options":{"num_predict":3}}'
  expect_out "Ollama chat (no stream) has eval counts" '"eval_count":3' -- \
    e2e_curl -sf "$WURL/api/chat" -d '{"model":"tiny","stream":false,"messages":[{"role":"user","content":"hi"}],"options":{"num_predict":3}}'
  expect_out "Ollama tags" '"name":"tiny' -- e2e_curl -sf "$WURL/api/tags"
  expect_out "unknown model is 404" '^404$' -- \
    e2e_curl -s -o /dev/null -w '%{http_code}' "$WURL/v1/chat/completions" -H 'Content-Type: application/json' -d '{"model":"nope","messages":[{"role":"user","content":"hi"}]}'
  expect_out "stats endpoint" '"in_flight"' -- e2e_curl -sf "$WURL/stats"
  expect_out "worker metrics" 'corral_worker_replica' -- e2e_curl -sf "$WURL/metrics"
  if [ -d "$here/worker_clients/node_modules/openai" ]; then
    expect_ok "the official openai and ollama npm clients" -- \
      env WORKER_URL="$WURL" WORKER_MODEL=tiny node --test --test-concurrency=1 "$here"/worker_clients/test/
  else
    skip_step "npm clients not installed (worker_clients npm fixture)"
  fi
}

step_drain() {
  local i pids=()
  for i in $(seq 1 20); do
    e2e_curl -sN "$WURL/v1/chat/completions" -H 'Content-Type: application/json' \
      -d '{"model":"tiny","stream":true,"messages":[{"role":"user","content":"x"}],"max_tokens":150,"seed":'"$i"'}' \
      >"$E2E_TMP/drain$i.out" &
    pids+=($!)
  done
  wait_for "requests are in flight" 10 -- sh -c "e2e_curl() { curl -s \"\$@\"; }; curl -s $WURL/stats | jq -e '[.. | .in_flight? // empty] | add > 0'"
  expect_ok "delete the replica" -- api DELETE "$NS/replicas/r1"
  expect_out "a new request is refused while draining" '^(503|404)$' -- \
    e2e_curl -s -o /dev/null -w '%{http_code}' "$WURL/v1/chat/completions" -H 'Content-Type: application/json' \
    -d '{"model":"tiny","messages":[{"role":"user","content":"x"}],"max_tokens":2}'
  for p in "${pids[@]}"; do wait "$p" || true; done
  local done_count
  done_count=$(grep -l '^data: \[DONE\]' "$E2E_TMP"/drain*.out | wc -l)
  expect_eq "all 20 in-flight streams completed" 20 -- echo "$done_count"
  wait_for "the replica is gone once drained" 30 -- sh -c "! curl -sfk -H 'Authorization: Bearer $E2E_TOKEN' ${E2E_CA:+--cacert $E2E_CA} $E2E_URL$NS/replicas/r1 >/dev/null"
}

step_failures() {
  replica missing-model nosuchmodel
  wait_for "a missing Model fails with a reason" 20 -- phase_is missing-model Failed
  expect_eq "reason ModelNotFound" ModelNotFound -- field "$NS/replicas/missing-model" .status.reason
  model big sim ',"resources":{"memoryBytes":1125899906842624}'
  replica too-big big
  wait_for "a model larger than memory fails" 20 -- phase_is too-big Failed
  expect_eq "reason InsufficientMemory" InsufficientMemory -- field "$NS/replicas/too-big" .status.reason
  model gguf llamacpp '' "file:///nonexistent/model.gguf"
  replica no-engine gguf
  wait_for "an unsupported engine or missing file fails" 20 -- phase_is no-engine Failed
  expect_out "the reason says which" '^(UnsupportedEngine|ModelFileNotFound)$' -- field "$NS/replicas/no-engine" .status.reason
  expect_ok "the worker stays healthy" -- kill -0 "$(worker_pid)"
  expect_eq "node still Ready" True -- field "$G/nodes/w1" '.status.conditions[0].status'
}

step_restart() {
  replica r2 tiny
  wait_for "r2 Ready" 30 -- phase_is r2 Ready
  local pid
  pid=$(worker_pid)
  kill -9 "$pid"
  while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
  start_worker
  wait_for "after kill -9 the worker serves r2 again" 30 -- \
    e2e_curl -sf "$WURL/v1/chat/completions" -H 'Content-Type: application/json' \
    -d '{"model":"tiny","messages":[{"role":"user","content":"hi"}],"max_tokens":2}'
  expect_eq "r2 Ready again" Ready -- field "$NS/replicas/r2" .status.phase
  expect_out "one replica loaded, no leftovers" '"replica":"r2"' -- e2e_curl -sf "$WURL/stats"
}

step_llamacpp() {
  [ -n "${CORRAL_GGUF_GEN:-}" ] || skip_step "built without the llama.cpp engine"
  local gguf=$E2E_TMP/tiny.gguf
  expect_ok "generate the tiny GGUF" -- "$CORRAL_GGUF_GEN" --out "$gguf"
  model tinyllama llamacpp ',"contextLength":256,"llamacpp":{"parallel":2}' "file://$gguf"
  replica r-llama tinyllama
  wait_for "the llama.cpp replica goes Ready" 60 -- phase_is r-llama Ready
  expect_out "OpenAI chat through llama.cpp" '"completion_tokens":5' -- \
    e2e_curl -sf "$WURL/v1/chat/completions" -H 'Content-Type: application/json' \
    -d '{"model":"tinyllama","messages":[{"role":"user","content":"hi"}],"max_tokens":5,"temperature":0}'
  expect_out "OpenAI stream through llama.cpp" '^data: \[DONE\]' -- \
    e2e_curl -sfN "$WURL/v1/chat/completions" -H 'Content-Type: application/json' \
    -d '{"model":"tinyllama","stream":true,"messages":[{"role":"user","content":"hi"}],"max_tokens":5}'
  expect_out "Ollama generate through llama.cpp" '"done":true' -- \
    e2e_curl -sfN "$WURL/api/generate" -d '{"model":"tinyllama","prompt":"hello","options":{"num_predict":4}}'
  expect_out "context overflow is a clear 400" '^400$' -- \
    e2e_curl -s -o /dev/null -w '%{http_code}' "$WURL/v1/completions" -H 'Content-Type: application/json' \
    -d '{"model":"tinyllama","prompt":"hi","max_tokens":100000}'
}

step "register and lease" step_register
step "replica Ready; OpenAI and Ollama endpoints" step_ready_and_serve
step "drain: 20 in-flight streams complete" step_drain
step "failures: missing model, too big, unsupported engine" step_failures
step "kill -9 and restart" step_restart
step "llama.cpp engine: real inference through both APIs" step_llamacpp
e2e_finish
