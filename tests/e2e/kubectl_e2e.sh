#!/usr/bin/env bash
# End-to-end: the real kubectl against `corral server` through the admin kubeconfig.
#
#   CORRAL_BIN=build/cmd/corral [KUBECTL=kubectl] [CORRAL_TEST_PGDIR=/tmp/corral-test-x] \
#     tests/e2e/kubectl_e2e.sh
#
# KUBECTL defaults to the image's dispatcher (runs the 1.29-1.33 kubectl matching the
# server's /version); the kubectl120_e2e CTest test runs it again with Debian's 1.20
# (KUBECTL=$(tests/e2e/support/kubectl120.sh)). Steps a kubectl version lacks are
# skipped by name, with the reason printed.
#
# Each step runs in a subshell; a failing check prints the command, its output and
# what was expected, ends that step, and the suite goes on (later steps may then fail
# too: read the first failure first). Exit status: 0 when every step passed or was
# skipped.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=support/lib.sh
source "$here/support/lib.sh"

KUBECTL=${KUBECTL:-kubectl}
e2e_init kubectl
e2e_start_server

# Every kubectl call is bounded; watches and waits are bounded separately.
kc() { timeout 90 "$KUBECTL" "$@"; }

# kubectl's minor version as it will actually run: the dispatcher runs the minor the
# server's /version reports.
client_version=$("$KUBECTL" version --client -o json 2>/dev/null | jq -r '.clientVersion.gitVersion // empty' || true)
if [[ -z $client_version || $client_version == *dispatcher* ]]; then
  KMINOR=$(api GET /version | jq -r '.minor' | tr -dc '0-9')
else
  KMINOR=$(sed -E 's/^v?1\.([0-9]+).*/\1/' <<<"$client_version")
fi
e2e_log "kubectl: $KUBECTL ($client_version), effective minor 1.$KMINOR"

need_minor() {
  local min=$1
  shift
  if [ "$KMINOR" -lt "$min" ]; then skip_step "kubectl 1.$KMINOR: $* (needs >= 1.$min)"; fi
}

M=$E2E_TMP/manifests
mkdir -p "$M"
G=/apis/corral.dev/v1alpha1

model_yaml() { # name memoryBytes [extra metadata lines] [namespace]
  cat <<EOF
apiVersion: corral.dev/v1alpha1
kind: Model
metadata:
  name: $1
  namespace: ${4:-default}
${3:-}
spec:
  engine: sim
  source: "sim://tiny"
  resources:
    memoryBytes: $2
EOF
}

model_yaml m1 1000000 "  labels:
    app: m1
    tier: silver" >"$M/m1.yaml"
model_yaml m1 2000000 "  labels:
    app: m1
    tier: gold" >"$M/m1-v2.yaml"
model_yaml m1 2000000 "  labels:
    app: m1" >"$M/m1-v3.yaml"
model_yaml m1 9999999 "  labels:
    app: m1" >"$M/m1-dry.yaml"
model_yaml m-dry 1000 "" >"$M/m-dry.yaml"
model_yaml m-wd 1000 "" >"$M/m-wd.yaml"
model_yaml m2 3000000 "" >"$M/m2.yaml"
model_yaml m9 1000 "" e2e-other >"$M/m9.yaml"
model_yaml m-fin 1000 "  finalizers:
  - corral.dev/e2e-hold" >"$M/m-fin.yaml"
: >"$M/chunk.yaml"
for i in 1 2 3 4 5 6 7; do
  model_yaml "c$i" "$i" "" e2e-chunk >>"$M/chunk.yaml"
  echo "---" >>"$M/chunk.yaml"
done
model_yaml s-a 3000 "" e2e-sort >"$M/sort.yaml"
{ echo "---"; model_yaml s-b 1000 "" e2e-sort; echo "---"; model_yaml s-c 2000 "" e2e-sort; } >>"$M/sort.yaml"

md_yaml() { # replicas [labels block]
  cat <<EOF
apiVersion: corral.dev/v1alpha1
kind: ModelDeployment
metadata:
  name: d1
  namespace: default
${2:-}
spec:
  modelRef:
    name: m1
  replicas: $1
  autoscaling:
    minReplicas: 1
    maxReplicas: 8
EOF
}
md_yaml 1 "  labels:
    app: d1
    extra: x" >"$M/d1.yaml"
md_yaml 2 "  labels:
    app: d1" >"$M/d1-v2.yaml"
md_yaml 5 "" >"$M/d1-other.yaml"

# The same model with an unknown field, once per validation mode.
bogus_yaml() {
  model_yaml "$1" 1000 "" | sed -e 's/^spec:$/spec:\n  bogus: 1/'
}
bogus_yaml m-warn >"$M/m-warn.yaml"
bogus_yaml m-strict >"$M/m-strict.yaml"
bogus_yaml m-default >"$M/m-default.yaml"
bogus_yaml m-noval >"$M/m-noval.yaml"
model_yaml m-bad 1000 "" | sed -e 's/engine: sim/engine: nope/' >"$M/m-bad.yaml"

# A Model as JSON, for raw API requests ("another client").
model_json() { # name namespace
  jq -nc --arg n "$1" --arg ns "$2" '{apiVersion:"corral.dev/v1alpha1",kind:"Model",
    metadata:{name:$n,namespace:$ns},spec:{engine:"sim",source:"sim://tiny",resources:{memoryBytes:1}}}'
}

# Small helpers usable as check commands.
jp() { kc get "$@"; }                                         # jp RES NAME -o jsonpath=...
raw_jq() { api GET "$1" | jq -er "$2"; }                      # raw_jq PATH JQ-FILTER
# (awk reads everything: `head` would close the pipe early and, with pipefail, fail it.)
header_cols() { kc get "$@" | awk 'NR == 1 {print NF}'; }
first_col() { kc get "$@" | awk 'NR > 1 {print $1}' | paste -sd, -; }
kc_jq() { # kc_jq GET-ARGS... -- JQ-FILTER
  local args=()
  while [ "$1" != -- ]; do args+=("$1"); shift; done
  kc get "${args[@]}" | jq -er "$2"
}
names_sorted() { kc get "$@" -o name | sed 's|.*/||' | sort | paste -sd, -; }
line_count() { kc get "$@" | wc -l; }
bg_alive() { kill -0 "$1" 2>/dev/null; }
file_has() { grep -Eq -- "$2" "$1"; }

# ---- steps ---------------------------------------------------------------------

step_api_resources() {
  expect_out "api-resources lists modeldeployments with short name md" \
    '^modeldeployments +md +.*true +ModelDeployment' -- kc api-resources --api-group=corral.dev
  expect_out "api-resources lists nodes as cluster-scoped" '^nodes +.*false +Node' \
    -- kc api-resources --api-group=corral.dev
  for r in models replicas; do
    expect_out "api-resources lists $r" "^$r " -- kc api-resources --api-group=corral.dev
  done
  expect_out "api-resources -o name" '^modeldeployments\.corral\.dev$' -- kc api-resources -o name
  expect_out "api-resources --namespaced=false has nodes" '^nodes' \
    -- kc api-resources --api-group=corral.dev --namespaced=false
  expect_no_out "api-resources --namespaced=false has no models" '^models' \
    -- kc api-resources --api-group=corral.dev --namespaced=false
  if [ "$KMINOR" -ge 22 ]; then
    # -o wide shows CATEGORIES (kubectl >= 1.22).
    expect_out "api-resources -o wide shows the 'all' category for modeldeployments" \
      '^modeldeployments .*[[:space:],]all(,[a-z]+)*$' -- kc api-resources --api-group=corral.dev -o wide
  else
    echo "  SKIP (part): kubectl 1.$KMINOR api-resources -o wide has no CATEGORIES column" >&2
  fi
}

step_explain() {
  expect_out "explain model.spec names engine" '^ *engine' -- kc explain model.spec
  expect_out "explain model.spec names source" '^ *source' -- kc explain model.spec
  expect_out "explain model.spec says which kind" 'KIND: *Model' -- kc explain model.spec
  expect_out "explain modeldeployment.spec.autoscaling names minReplicas" '^ *minReplicas' \
    -- kc explain modeldeployment.spec.autoscaling
  expect_out "explain modeldeployment.spec.autoscaling names maxReplicas" '^ *maxReplicas' \
    -- kc explain modeldeployment.spec.autoscaling
  expect_out "explain md (short name) works" 'KIND: *ModelDeployment' -- kc explain md
  expect_fail "explain of an unknown field fails" 'does not exist|couldn.t find|not found' \
    -- kc explain model.spec.nosuchfield
}

step_apply() {
  expect_out "apply creates" '^model\.corral\.dev/m1 created$' -- kc apply -f "$M/m1.yaml"
  expect_out "apply again is unchanged" '^model\.corral\.dev/m1 unchanged$' -- kc apply -f "$M/m1.yaml"
  expect_out "apply of a changed manifest configures" '^model\.corral\.dev/m1 configured$' \
    -- kc apply -f "$M/m1-v2.yaml"
  expect_eq "the change is stored" 2000000 \
    -- jp model m1 -o 'jsonpath={.spec.resources.memoryBytes}'
  expect_eq "the changed label is stored" gold -- jp model m1 -o 'jsonpath={.metadata.labels.tier}'
  expect_out "last-applied-configuration annotation is stored" '2000000' \
    -- jp model m1 -o 'jsonpath={.metadata.annotations.kubectl\.kubernetes\.io/last-applied-configuration}'
  expect_out "apply of a manifest without a label configures" '^model\.corral\.dev/m1 configured$' \
    -- kc apply -f "$M/m1-v3.yaml"
  expect_eq "the label left out is removed (three-way merge sends null)" "" \
    -- jp model m1 -o 'jsonpath={.metadata.labels.tier}'
  expect_eq "generation counts the spec change only" 2 -- jp model m1 -o 'jsonpath={.metadata.generation}'
}

step_apply_dry_run() {
  expect_out "apply --dry-run=server of a new object says created (server dry run)" \
    '^model\.corral\.dev/m-dry created \(server dry run\)$' -- kc apply --dry-run=server -f "$M/m-dry.yaml"
  expect_fail "nothing was persisted" 'NotFound|not found' -- kc get model m-dry
  expect_out "apply --dry-run=server of a change says configured (server dry run)" \
    '^model\.corral\.dev/m1 configured \(server dry run\)$' -- kc apply --dry-run=server -f "$M/m1-dry.yaml"
  expect_eq "the change was not persisted" 2000000 \
    -- jp model m1 -o 'jsonpath={.spec.resources.memoryBytes}'
}

step_server_side_apply() {
  expect_out "apply --server-side creates" '^modeldeployment\.corral\.dev/d1 serverside-applied$' \
    -- kc apply --server-side -f "$M/d1.yaml"
  expect_eq "created with replicas 1" 1 -- jp md d1 -o 'jsonpath={.spec.replicas}'
  expect_out "apply --server-side updates" '^modeldeployment\.corral\.dev/d1 serverside-applied$' \
    -- kc apply --server-side -f "$M/d1-v2.yaml"
  expect_eq "updated to replicas 2" 2 -- jp md d1 -o 'jsonpath={.spec.replicas}'
  expect_eq "a label the manager no longer applies is removed" "" \
    -- jp md d1 -o 'jsonpath={.metadata.labels.extra}'
  expect_eq "the label still applied stays" d1 -- jp md d1 -o 'jsonpath={.metadata.labels.app}'
  expect_fail "a second field manager conflicts on .spec.replicas" '[Cc]onflict.*|\.spec\.replicas' \
    -- kc apply --server-side --field-manager=other -f "$M/d1-other.yaml"
  expect_last "the conflict names .spec.replicas" '\.spec\.replicas'
  expect_eq "the conflicting apply changed nothing" 2 -- jp md d1 -o 'jsonpath={.spec.replicas}'
  expect_out "--force-conflicts takes ownership" '^modeldeployment\.corral\.dev/d1 serverside-applied$' \
    -- kc apply --server-side --field-manager=other --force-conflicts -f "$M/d1-other.yaml"
  expect_eq "forced apply stored replicas 5" 5 -- jp md d1 -o 'jsonpath={.spec.replicas}'
  expect_out "managedFields list both managers" '(^|,)other(,|$)' \
    -- raw_jq "$G/namespaces/default/modeldeployments/d1" '[.metadata.managedFields[].manager] | join(",")'
  expect_last "managedFields list both managers" '(^|,)kubectl(,|$)'
  expect_eq "'other' now owns f:spec.f:replicas" true \
    -- raw_jq "$G/namespaces/default/modeldeployments/d1" \
    '[.metadata.managedFields[] | select(.manager == "other") | .fieldsV1["f:spec"]["f:replicas"] | select(. != null)] | length == 1'
  expect_eq "'kubectl' no longer owns f:spec.f:replicas" true \
    -- raw_jq "$G/namespaces/default/modeldeployments/d1" \
    '[.metadata.managedFields[] | select(.manager == "kubectl") | .fieldsV1["f:spec"]["f:replicas"] | select(. != null)] | length == 0'
}

step_create_replace() {
  expect_out "create" '^model\.corral\.dev/m2 created$' -- kc create -f "$M/m2.yaml"
  expect_fail "create again is AlreadyExists" 'AlreadyExists' -- kc create -f "$M/m2.yaml"
  kc get model m2 -o yaml >"$M/m2-old.yaml"
  sed -e 's/memoryBytes: 3000000/memoryBytes: 3100000/' "$M/m2-old.yaml" >"$M/m2-new.yaml"
  sed -e 's/memoryBytes: 3000000/memoryBytes: 3200000/' "$M/m2-old.yaml" >"$M/m2-stale.yaml"
  expect_out "replace" '^model\.corral\.dev/m2 replaced$' -- kc replace -f "$M/m2-new.yaml"
  expect_eq "replaced value stored" 3100000 -- jp model m2 -o 'jsonpath={.spec.resources.memoryBytes}'
  expect_fail "replace with a stale resourceVersion is a Conflict" 'Conflict' \
    -- kc replace -f "$M/m2-stale.yaml"
  expect_eq "the stale replace changed nothing" 3100000 \
    -- jp model m2 -o 'jsonpath={.spec.resources.memoryBytes}'
}

step_edit() {
  cat >"$E2E_TMP/editor.sh" <<'EOF'
#!/bin/sh
sed -i -e 's/memoryBytes: 3100000/memoryBytes: 4000000/' "$1"
EOF
  printf '#!/bin/sh\nexit 0\n' >"$E2E_TMP/noop-editor.sh"
  chmod +x "$E2E_TMP/editor.sh" "$E2E_TMP/noop-editor.sh"
  expect_out "edit" '^model\.corral\.dev/m2 edited$' \
    -- env KUBE_EDITOR="$E2E_TMP/editor.sh" EDITOR="$E2E_TMP/editor.sh" "$KUBECTL" edit model m2
  expect_eq "edited value stored" 4000000 -- jp model m2 -o 'jsonpath={.spec.resources.memoryBytes}'
  expect_out "edit without a change is cancelled" 'Edit cancelled, no changes made' \
    -- env KUBE_EDITOR="$E2E_TMP/noop-editor.sh" EDITOR="$E2E_TMP/noop-editor.sh" "$KUBECTL" edit model m2
}

step_patch() {
  expect_out "patch --type merge" '^model\.corral\.dev/m2 patched$' \
    -- kc patch model m2 --type merge -p '{"spec":{"resources":{"memoryBytes":5000000}}}'
  expect_eq "merge patch stored" 5000000 -- jp model m2 -o 'jsonpath={.spec.resources.memoryBytes}'
  expect_out "patch --type json" '^model\.corral\.dev/m2 patched$' \
    -- kc patch model m2 --type json -p '[{"op":"replace","path":"/spec/resources/memoryBytes","value":6000000}]'
  expect_eq "json patch stored" 6000000 -- jp model m2 -o 'jsonpath={.spec.resources.memoryBytes}'
  expect_fail "a failing json patch test op is rejected" 'Error from server|is invalid' \
    -- kc patch model m2 --type json -p '[{"op":"test","path":"/spec/engine","value":"llamacpp"},{"op":"replace","path":"/spec/resources/memoryBytes","value":1}]'
  expect_eq "the failed json patch changed nothing" 6000000 \
    -- jp model m2 -o 'jsonpath={.spec.resources.memoryBytes}'
  expect_out "patch (strategic, kubectl's default)" '^model\.corral\.dev/m2 patched$' \
    -- kc patch model m2 -p '{"metadata":{"labels":{"tier":"bronze"}}}'
  expect_eq "strategic patch stored" bronze -- jp model m2 -o 'jsonpath={.metadata.labels.tier}'
  expect_out "patch --type strategic" '^model\.corral\.dev/m2 patched' \
    -- kc patch model m2 --type strategic -p '{"spec":{"resources":{"memoryBytes":6100000}}}'
  expect_eq "strategic patch of spec stored" 6100000 -- jp model m2 -o 'jsonpath={.spec.resources.memoryBytes}'
  expect_out "a patch that changes nothing says so" 'patched \(no change\)' \
    -- kc patch model m2 --type merge -p '{"metadata":{"labels":{"tier":"bronze"}}}'
}

step_label_annotate() {
  expect_out "label" '^model\.corral\.dev/m2 labeled$' -- kc label model m2 team=a
  expect_eq "label stored" a -- jp model m2 -o 'jsonpath={.metadata.labels.team}'
  expect_fail "label without --overwrite refuses to change a value" 'already has a value' \
    -- kc label model m2 team=b
  expect_out "label --overwrite" '^model\.corral\.dev/m2 labeled$' -- kc label model m2 team=b --overwrite
  expect_eq "label overwritten" b -- jp model m2 -o 'jsonpath={.metadata.labels.team}'
  expect_out "label removal (1.20 says labeled)" '^model\.corral\.dev/m2 (un)?labeled$' -- kc label model m2 team-
  expect_eq "label removed" "" -- jp model m2 -o 'jsonpath={.metadata.labels.team}'
  expect_out "annotate" '^model\.corral\.dev/m2 annotated$' -- kc annotate model m2 note=hello
  expect_eq "annotation stored" hello -- jp model m2 -o 'jsonpath={.metadata.annotations.note}'
  expect_out "label --all labels every model in the namespace" '^model\.corral\.dev/m1 labeled$' \
    -- kc label models --all suite=e2e
  expect_last "label --all labels m2 too" '^model\.corral\.dev/m2 labeled$'
  expect_eq "label selector finds both" "m1,m2" -- first_col models -l suite=e2e
}

step_get() {
  expect_out "get models: server-side columns" '^NAME +ENGINE +SOURCE +AGE *$' -- kc get models
  expect_out "get models: a row" '^m1 +sim +sim://tiny +[0-9]+[smhd]' -- kc get models
  expect_out "get md: server-side columns" '^NAME +READY +DESIRED +MIN +MAX +MODEL +AGE *$' -- kc get md
  expect_out "get md: a row" '^d1 +.* +1 +8 +m1 +[0-9]+[smhd]' -- kc get md
  expect_out "get one" '^m1 ' -- kc get model m1
  expect_fail "get a missing one" 'NotFound.*"nope" not found' -- kc get model nope
  expect_out "-o yaml" '^kind: Model$' -- kc get model m1 -o yaml
  expect_out "-o yaml has server-set metadata" '^  resourceVersion: "[0-9]+"$' -- kc get model m1 -o yaml
  expect_last "-o yaml has uid" '^  uid: [0-9a-f-]{36}$'
  expect_last "-o yaml has creationTimestamp" '^  creationTimestamp: "[0-9T:-]+Z"$'
  expect_eq "-o json" true -- kc_jq model m1 -o json -- '.kind == "Model" and
    .apiVersion == "corral.dev/v1alpha1" and .metadata.name == "m1" and
    .metadata.namespace == "default" and (.metadata.generation | type) == "number"'
  expect_eq "list -o json has both models" "m1,m2" \
    -- kc_jq models -o json -- '[.items[].metadata.name] | join(",")'
  expect_ok "-o wide" -- kc get md -o wide
  local narrow wide
  narrow=$(header_cols md)
  wide=$(header_cols md -o wide)
  expect_ok "-o wide has more columns ($wide) than the default ($narrow)" -- test "$wide" -gt "$narrow"
  expect_out "apply into a second namespace" 'm9 created' -- kc apply -f "$M/m9.yaml"
  expect_out "-A has a NAMESPACE column" '^NAMESPACE +NAME +ENGINE' -- kc get models -A
  expect_out "-A lists default/m1" '^default +m1 ' -- kc get models -A
  expect_out "-A lists e2e-other/m9" '^e2e-other +m9 ' -- kc get models -A
  expect_out "--show-labels" '^m1 .*app=m1' -- kc get model m1 --show-labels
  expect_out "--show-labels header" 'LABELS$' -- kc get model m1 --show-labels
  expect_out "apply a multi-document file" 's-c created' -- kc apply -f "$M/sort.yaml"
  expect_eq "--sort-by (table, includeObject)" "s-b,s-c,s-a" \
    -- first_col models -n e2e-sort --sort-by=.spec.resources.memoryBytes
  expect_eq "--sort-by name with custom columns" "s-a,s-b,s-c" \
    -- first_col models -n e2e-sort --sort-by=.metadata.name -o custom-columns=N:.metadata.name
  expect_out "custom-columns header" '^NAME +ENGINE +MEM$' \
    -- kc get model m1 -o custom-columns=NAME:.metadata.name,ENGINE:.spec.engine,MEM:.spec.resources.memoryBytes
  expect_last "custom-columns row" '^m1 +sim +2000000$'
  expect_out "apply 7 models for chunking" 'c7 created' -- kc apply -f "$M/chunk.yaml"
  expect_eq "--chunk-size=1 returns all 7" "c1,c2,c3,c4,c5,c6,c7" \
    -- names_sorted models -n e2e-chunk --chunk-size=1
  expect_eq "--chunk-size=1 table output: one header, 7 rows" "8" \
    -- line_count models -n e2e-chunk --chunk-size=1
  # -v=6 logs each request: 7 pages, 6 of them following a continue token.
  kc get models -n e2e-chunk --chunk-size=1 -v=6 >"$E2E_TMP/chunk.log" 2>&1
  expect_ok "--chunk-size=1 sent limit=1 on every page (>= 7 requests)" \
    -- test "$(grep -c 'models?.*limit=1' "$E2E_TMP/chunk.log")" -ge 7
  expect_ok "--chunk-size=1 followed continue tokens (>= 6)" \
    -- test "$(grep -c 'continue=' "$E2E_TMP/chunk.log")" -ge 6
  expect_out "label selector" '^m1 ' -- kc get models -l app=m1
  expect_no_out "label selector excludes" '^m2 ' -- kc get models -l app=m1
  expect_out "field selector" '^m2 ' -- kc get models --field-selector metadata.name=m2
  expect_no_out "field selector excludes" '^m1 ' -- kc get models --field-selector metadata.name=m2
}

step_get_watch() {
  expect_ok "create w1 (another client)" \
    -- api POST "$G/namespaces/e2e-watch/models" "$(model_json w1 e2e-watch)"
  local out1=$E2E_TMP/watch1.out out2=$E2E_TMP/watch2.out out3=$E2E_TMP/watch3.out
  timeout 60 "$KUBECTL" get models -n e2e-watch -w \
    -o custom-columns=NAME:.metadata.name,V:.metadata.labels.v >"$out1" 2>&1 &
  local p1=$!
  e2e_bg_record $p1
  timeout 60 "$KUBECTL" get models -n e2e-watch -w --output-watch-events >"$out2" 2>&1 &
  local p2=$!
  e2e_bg_record $p2
  timeout 60 "$KUBECTL" get model w1 -n e2e-watch -w >"$out3" 2>&1 &
  local p3=$!
  e2e_bg_record $p3
  wait_for "get -w prints the current object first" 20 -- file_has "$out1" '^w1 +<none>$'
  wait_for "get -w --output-watch-events prints ADDED w1" 20 -- file_has "$out2" '^ADDED +w1 '
  wait_for "get NAME -w prints w1" 20 -- file_has "$out3" '^w1 '
  expect_ok "label w1 (another client)" \
    -- api PATCH "$G/namespaces/e2e-watch/models/w1" '{"metadata":{"labels":{"v":"two"}}}' application/merge-patch+json
  wait_for "get -w sees the change" 20 -- file_has "$out1" '^w1 +two$'
  wait_for "get -w --output-watch-events sees MODIFIED" 20 -- file_has "$out2" '^MODIFIED +w1 '
  wait_for "get NAME -w prints a second row" 20 -- test "$(grep -c '^w1 ' "$out3")" -ge 2
  expect_ok "create w2 (another client)" \
    -- api POST "$G/namespaces/e2e-watch/models" "$(model_json w2 e2e-watch)"
  wait_for "get -w sees the new object" 20 -- file_has "$out1" '^w2 '
  expect_ok "delete w2 (another client)" -- api DELETE "$G/namespaces/e2e-watch/models/w2"
  wait_for "get -w --output-watch-events sees DELETED" 20 -- file_has "$out2" '^DELETED +w2 '
  expect_no_out "get NAME -w shows only w1" '^w2 ' -- cat "$out3"
  expect_no_out "no unrequested BOOKMARK rows" '<unknown>|BOOKMARK' -- cat "$out1" "$out2"
  kill $p1 $p2 $p3 2>/dev/null || true
}

step_get_all() {
  expect_out "get all shows modeldeployments" '^modeldeployment\.corral\.dev/d1 ' -- kc get all
  expect_not_last "get all prints no error" '^(error|Error)'
}

step_describe() {
  local uid now
  uid=$(kc get md d1 -o 'jsonpath={.metadata.uid}')
  now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  expect_ok "create an Event for d1 (another client)" -- api POST /api/v1/namespaces/default/events "$(
    jq -nc --arg uid "$uid" --arg now "$now" '{apiVersion:"v1",kind:"Event",
      metadata:{name:"d1.e2e-scaled",namespace:"default"},
      involvedObject:{apiVersion:"corral.dev/v1alpha1",kind:"ModelDeployment",name:"d1",namespace:"default",uid:$uid},
      reason:"ScaledUp",message:"e2e: scaled from 1 to 3 replicas",type:"Normal",count:1,
      firstTimestamp:$now,lastTimestamp:$now,source:{component:"e2e"}}')"
  expect_out "describe names the object" '^Name: +d1$' -- kc describe md d1
  expect_last "describe shows the spec" 'Replicas: +5'
  expect_last "describe has an Events section" '^Events:'
  expect_last "describe shows the event" 'Normal +ScaledUp .*e2e: scaled from 1 to 3 replicas'
  expect_out "describe of an object without events" '^Events: +<none>' -- kc describe model m1
  expect_out "describe by label selector" '^Name: +m1$' -- kc describe models -l app=m1
}

step_scale() {
  expect_out "scale" '^modeldeployment\.corral\.dev/d1 scaled$' -- kc scale md d1 --replicas=3
  expect_eq "scaled to 3" 3 -- jp md d1 -o 'jsonpath={.spec.replicas}'
  expect_out "scale --current-replicas (matching)" '^modeldeployment\.corral\.dev/d1 scaled$' \
    -- kc scale md d1 --current-replicas=3 --replicas=4
  expect_eq "scaled to 4" 4 -- jp md d1 -o 'jsonpath={.spec.replicas}'
  expect_fail "scale --current-replicas (mismatching) fails" 'Expected replicas to be 1, was 4|precondition|[Cc]onflict' \
    -- kc scale md d1 --current-replicas=1 --replicas=7
  expect_eq "the refused scale changed nothing" 4 -- jp md d1 -o 'jsonpath={.spec.replicas}'
  expect_eq "GET /scale is an autoscaling/v1 Scale" "Scale autoscaling/v1 4 d1" \
    -- raw_jq "$G/namespaces/default/modeldeployments/d1/scale" \
    '"\(.kind) \(.apiVersion) \(.spec.replicas) \(.metadata.name)"'
}

step_wait() {
  expect_out "apply m-wd" 'm-wd created' -- kc apply -f "$M/m-wd.yaml"
  timeout 60 "$KUBECTL" wait model m-wd --for=delete --timeout=45s >"$E2E_TMP/waitdel.out" 2>&1 &
  local pd=$!
  e2e_bg_record $pd
  sleep 1
  expect_ok "wait --for=delete is still waiting" -- bg_alive $pd
  expect_ok "delete m-wd (another client)" -- api DELETE "$G/namespaces/default/models/m-wd"
  local rc=0
  wait $pd || rc=$?
  expect_ok "wait --for=delete returns 0 (rc=$rc)" -- test $rc -eq 0
  need_minor 23 "wait --for=jsonpath"
  timeout 60 "$KUBECTL" wait md d1 '--for=jsonpath={.spec.replicas}=6' --timeout=45s >"$E2E_TMP/waitjp.out" 2>&1 &
  local pj=$!
  e2e_bg_record $pj
  sleep 1
  expect_ok "wait --for=jsonpath is still waiting" -- bg_alive $pj
  expect_ok "scale d1 to 6 (another client)" \
    -- api PATCH "$G/namespaces/default/modeldeployments/d1/scale" '{"spec":{"replicas":6}}' application/merge-patch+json
  rc=0
  wait $pj || rc=$?
  expect_out "wait --for=jsonpath returns 'condition met' (rc=$rc)" 'd1 condition met' -- cat "$E2E_TMP/waitjp.out"
  expect_out "wait --for=jsonpath when already true" 'd1 condition met' \
    -- kc wait md d1 '--for=jsonpath={.spec.replicas}=6' --timeout=10s
  expect_fail "wait --for=jsonpath times out when never true" 'timed out' \
    -- kc wait md d1 '--for=jsonpath={.spec.replicas}=99' --timeout=2s
}

step_delete_finalizer() {
  expect_out "create an object with a finalizer" 'm-fin created' -- kc apply -f "$M/m-fin.yaml"
  timeout 90 "$KUBECTL" delete -f "$M/m-fin.yaml" --timeout=80s >"$E2E_TMP/del.out" 2>&1 &
  local pd=$!
  e2e_bg_record $pd
  wait_for "deletionTimestamp is set" 20 \
    -- raw_jq "$G/namespaces/default/models/m-fin" '.metadata.deletionTimestamp != null'
  sleep 2
  expect_ok "kubectl delete waits while the finalizer is there" -- bg_alive $pd
  expect_ok "the object is still readable" -- kc get model m-fin
  expect_ok "remove the finalizer (another client)" \
    -- api PATCH "$G/namespaces/default/models/m-fin" '{"metadata":{"finalizers":null}}' application/merge-patch+json
  local rc=0
  wait $pd || rc=$?
  expect_out "kubectl delete -f finished (rc=$rc)" 'model\.corral\.dev "m-fin" deleted' -- cat "$E2E_TMP/del.out"
  expect_ok "kubectl delete -f exit status 0" -- test $rc -eq 0
  expect_fail "the object is gone" 'NotFound|not found' -- kc get model m-fin
  expect_out "delete -f of a plain object" 'model\.corral\.dev "m2" deleted' -- kc delete -f "$M/m2.yaml"
  expect_fail "delete of a missing object is NotFound" 'NotFound' -- kc delete model m2
}

step_validate() {
  expect_fail "an invalid value is rejected as Invalid naming spec.engine" 'spec\.engine' \
    -- kc apply -f "$M/m-bad.yaml"
  expect_last "... as Invalid" 'is invalid|Invalid'
  expect_fail "the invalid object was not stored" 'NotFound|not found' -- kc get model m-bad
  if [ "$KMINOR" -lt 25 ]; then
    # kubectl < 1.25 validates client-side against /openapi/v2 (protobuf) and only
    # knows --validate=true|false.
    expect_fail "kubectl 1.$KMINOR client-side validation rejects the unknown field" \
      'unknown field "bogus"|ValidationError' -- kc apply -f "$M/m-default.yaml"
    expect_fail "... nothing was stored" 'NotFound|not found' -- kc get model m-default
    expect_out "--validate=false sends it; the server creates it" 'm-noval created' \
      -- kc apply --validate=false -f "$M/m-noval.yaml"
    expect_eq "... and drops the unknown field" "" -- jp model m-noval -o 'jsonpath={.spec.bogus}'
    skip_step "kubectl 1.$KMINOR has no --validate=warn|strict (needs >= 1.25); client-side validation checked instead"
  fi
  expect_out "--validate=warn creates the object" 'm-warn created' -- kc apply --validate=warn -f "$M/m-warn.yaml"
  expect_last "--validate=warn prints the server's warning" 'Warning: .*unknown field "spec\.bogus"'
  expect_ok "the object was created" -- kc get model m-warn
  expect_eq "the unknown field was dropped" "" -- jp model m-warn -o 'jsonpath={.spec.bogus}'
  expect_fail "--validate=strict rejects the unknown field" 'unknown field "spec\.bogus"' \
    -- kc apply --validate=strict -f "$M/m-strict.yaml"
  expect_last "... as BadRequest" 'BadRequest'
  expect_fail "nothing was stored" 'NotFound|not found' -- kc get model m-strict
  expect_fail "the default (--validate=true) is strict too" 'unknown field "spec\.bogus"' \
    -- kc apply -f "$M/m-default.yaml"
  expect_out "--validate=false creates it" 'm-noval created' -- kc apply --validate=false -f "$M/m-noval.yaml"
}


step "api-resources" step_api_resources
step "explain" step_explain
step "apply (created/unchanged/configured)" step_apply
step "apply --dry-run=server" step_apply_dry_run
step "apply --server-side (create/update/conflict/--force-conflicts)" step_server_side_apply
step "create/replace (stale -> Conflict)" step_create_replace
step "edit" step_edit
step "patch (merge/json/strategic)" step_patch
step "label/annotate" step_label_annotate
step "get (list/one/yaml/json/wide/-A/labels/sort/custom-columns/chunk-size)" step_get
step "get -w" step_get_watch
step "get all" step_get_all
step "describe (with events)" step_describe
step "scale" step_scale
step "wait" step_wait
step "delete -f (finalizer)" step_delete_finalizer
step "validation (invalid, --validate=warn/strict)" step_validate

e2e_finish
