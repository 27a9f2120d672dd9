# shellcheck shell=bash
# Shared harness for the bash e2e suites (sourced, not run).
#
#   e2e_init NAME            private temp dir under /tmp (the embedded PostgreSQL, running
#                            as an unprivileged user when we are root, must reach it),
#                            cleanup trap, kubectl home/cache inside it.
#   e2e_start_server         corral server on a free loopback port; waits for /readyz.
#                            Uses a fresh database in the shared test cluster when
#                            CORRAL_TEST_PGDIR names a running one, else the embedded mode.
#   step NAME FUNC           runs FUNC in a subshell with `set -e`; a failing check ends
#                            the step, the suite goes on; exit code 3 means skipped.
#   e2e_finish               prints the summary; exit status 1 when a step failed.
#
# Checks print the command, its output and what was expected when they fail:
#   expect_ok DESC -- CMD...             CMD succeeds
#   expect_out DESC REGEX -- CMD...      CMD succeeds and its output matches REGEX (grep -E)
#   expect_no_out DESC REGEX -- CMD...   CMD succeeds and its output does not match REGEX
#   expect_eq DESC VALUE -- CMD...       CMD succeeds and prints exactly VALUE (trailing
#                                        newlines ignored)
#   expect_fail DESC REGEX -- CMD...     CMD fails and its output matches REGEX
#   expect_last DESC REGEX               the previous command's output also matches REGEX
#   expect_not_last DESC REGEX           ... does not match REGEX
#   wait_for DESC SECONDS -- CMD...      retries CMD until it succeeds, at most SECONDS
# The output of the last command is in $E2E_TMP/last.out.
#
# Environment: CORRAL_BIN (required), CORRAL_TEST_PGDIR (optional), E2E_KUBE_MINOR
# (optional: the server's /version minor, so the image's kubectl dispatcher runs that
# kubectl), E2E_KEEP=1 keeps the temp dir.

E2E_FAILED=()
E2E_PASSED=()
E2E_SKIPPED=()
E2E_SERVER_PID=""
E2E_DB=""
E2E_ADMIN_DSN=""
E2E_LAST_CMD=()

e2e_log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

e2e_init() {
  local name=$1
  : "${CORRAL_BIN:?CORRAL_BIN must name the corral binary}"
  E2E_NAME=$name
  E2E_TMP=$(mktemp -d "/tmp/corral-e2e-${name}.XXXXXX")
  chmod 755 "$E2E_TMP"
  E2E_DATA=$E2E_TMP/data
  mkdir -p "$E2E_DATA" "$E2E_TMP/home"
  chmod 755 "$E2E_DATA"
  : >"$E2E_TMP/bg.pids"
  # kubectl keeps its discovery/OpenAPI cache under $HOME/.kube: a private one, so runs
  # against different servers on a reused port never see each other's cache.
  export HOME=$E2E_TMP/home
  unset KUBECONFIG
  trap e2e_cleanup EXIT
  trap 'exit 130' INT TERM
}

# Background processes started by steps (which run in subshells) are recorded in a
# file so the EXIT trap can end them.
e2e_bg_record() { echo "$1" >>"$E2E_TMP/bg.pids"; }

e2e_cleanup() {
  local rc=$?
  set +e
  if [ -s "$E2E_TMP/bg.pids" ]; then
    while read -r pid; do kill "$pid" 2>/dev/null; done <"$E2E_TMP/bg.pids"
  fi
  e2e_stop_server
  if [ -n "$E2E_DB" ] && [ -n "$E2E_ADMIN_DSN" ]; then
    psql "$E2E_ADMIN_DSN" -qAt -c "DROP DATABASE IF EXISTS \"$E2E_DB\" WITH (FORCE)" >/dev/null 2>&1
  fi
  if [ "$rc" -ne 0 ] && [ -f "$E2E_TMP/server.log" ]; then
    echo "---- last 60 lines of the server log ($E2E_TMP/server.log) ----" >&2
    tail -n 60 "$E2E_TMP/server.log" >&2
  fi
  if [ "${E2E_KEEP:-0}" = 1 ] || [ "$rc" -ne 0 ]; then
    e2e_log "kept $E2E_TMP"
  else
    rm -rf "$E2E_TMP"
  fi
  exit "$rc"
}

e2e_free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# A fresh database in the shared test cluster, when there is one.
e2e_prepare_db() {
  E2E_DSN=""
  if [ -z "${CORRAL_TEST_PGDIR:-}" ] || [ ! -d "$CORRAL_TEST_PGDIR" ]; then
    e2e_log "no shared test cluster (CORRAL_TEST_PGDIR); using the embedded mode"
    return 0
  fi
  local dsn
  dsn=$("$CORRAL_BIN" db dsn --data-dir "$CORRAL_TEST_PGDIR") || {
    e2e_log "no test cluster at $CORRAL_TEST_PGDIR"
    return 1
  }
  E2E_ADMIN_DSN=$(printf '%s' "$dsn" | sed -E "s/dbname='[^']*'/dbname='postgres'/")
  E2E_DB="e2e_${E2E_NAME//-/_}_$$"
  psql "$E2E_ADMIN_DSN" -v ON_ERROR_STOP=1 -qAt -c "CREATE DATABASE \"$E2E_DB\"" >/dev/null
  E2E_DSN=$(printf '%s' "$dsn" | sed -E "s/dbname='[^']*'/dbname='$E2E_DB'/")
}

# The first "KEY: value" of the kubeconfig, quotes stripped.
kubeconfig_field() {
  awk -v k="$1" '$1 == k {print $2; exit}' "$KUBECONFIG" | tr -d "\"'"
}

# Starts (or restarts, same port and data) the server; sets E2E_URL, KUBECONFIG,
# E2E_TOKEN (admin) and E2E_CA (CA file, empty for plain HTTP).
e2e_start_server() {
  if [ -z "${E2E_PORT:-}" ]; then
    e2e_prepare_db
    E2E_PORT=$(e2e_free_port)
  fi
  local args=(server --data-dir "$E2E_DATA" --listen "127.0.0.1:$E2E_PORT")
  [ -n "${E2E_DSN:-}" ] && args+=(--database-url "$E2E_DSN")
  # The minor /version reports, which picks the kubectl the image's dispatcher runs.
  [ -n "${E2E_KUBE_MINOR:-}" ] && args+=(--kube-minor "$E2E_KUBE_MINOR")
  e2e_log "starting: $CORRAL_BIN ${args[*]}"
  "$CORRAL_BIN" "${args[@]}" >>"$E2E_TMP/server.log" 2>&1 &
  E2E_SERVER_PID=$!
  local deadline=$((SECONDS + 120))
  while [ ! -s "$E2E_DATA/admin.kubeconfig" ]; do
    kill -0 "$E2E_SERVER_PID" 2>/dev/null || { e2e_log "server exited before writing admin.kubeconfig"; return 1; }
    [ $SECONDS -lt $deadline ] || { e2e_log "no $E2E_DATA/admin.kubeconfig after 120 s"; return 1; }
    sleep 0.2
  done
  export KUBECONFIG=$E2E_DATA/admin.kubeconfig
  E2E_URL=$(kubeconfig_field server:)
  E2E_TOKEN=$(kubeconfig_field token:)
  E2E_CA=""
  local ca_data ca_file
  ca_data=$(kubeconfig_field certificate-authority-data:)
  ca_file=$(kubeconfig_field certificate-authority:)
  if [ -n "$ca_data" ]; then
    E2E_CA=$E2E_TMP/ca.crt
    printf '%s' "$ca_data" | base64 -d >"$E2E_CA"
  elif [ -n "$ca_file" ]; then
    E2E_CA=$ca_file
  fi
  if [ -z "$E2E_URL" ] || [ -z "$E2E_TOKEN" ]; then
    e2e_log "kubeconfig lacks server or token"
    return 1
  fi
  while :; do
    kill -0 "$E2E_SERVER_PID" 2>/dev/null || { e2e_log "server exited before ready"; return 1; }
    [ "$(e2e_curl -o /dev/null -w '%{http_code}' "$E2E_URL/readyz" 2>/dev/null)" = 200 ] && break
    [ $SECONDS -lt $deadline ] || { e2e_log "/readyz not 200 after 120 s"; return 1; }
    sleep 0.2
  done
  e2e_log "server ready at $E2E_URL (pid $E2E_SERVER_PID)"
}

e2e_stop_server() {
  [ -n "$E2E_SERVER_PID" ] || return 0
  kill -TERM "$E2E_SERVER_PID" 2>/dev/null
  local deadline=$((SECONDS + 30))
  while kill -0 "$E2E_SERVER_PID" 2>/dev/null && [ $SECONDS -lt $deadline ]; do
    sleep 0.2
  done
  if kill -0 "$E2E_SERVER_PID" 2>/dev/null; then
    e2e_log "server did not stop in 30 s; killing it"
    kill -KILL "$E2E_SERVER_PID" 2>/dev/null
  fi
  wait "$E2E_SERVER_PID" 2>/dev/null
  E2E_SERVER_PID=""
}

# curl with the server's CA (or none for http), bounded in time.
e2e_curl() {
  local tls=()
  if [ -n "${E2E_CA:-}" ]; then tls=(--cacert "$E2E_CA"); fi
  curl -sS --max-time 30 "${tls[@]}" "$@"
}

# "Another client": a raw API request with a token (default: admin).
#   api METHOD PATH [BODY [CONTENT_TYPE]]  -> body on stdout; fails unless 2xx
#   API_TOKEN=... overrides the token.
api() {
  local method=$1 path=$2 body=${3-} ctype=${4:-application/json}
  local args=(-X "$method" -H "Authorization: Bearer ${API_TOKEN:-$E2E_TOKEN}"
    -H "Accept: application/json" -o "$E2E_TMP/api.body" -w '%{http_code}')
  if [ -n "$body" ]; then args+=(-H "Content-Type: $ctype" --data-binary "$body"); fi
  local code
  code=$(e2e_curl "${args[@]}" "$E2E_URL$path") || { echo "curl failed: $method $path" >&2; return 1; }
  cat "$E2E_TMP/api.body"
  case "$code" in
    2*) return 0 ;;
    *) echo "HTTP $code for $method $path" >&2; return 1 ;;
  esac
}

# ---- checks ------------------------------------------------------------------

_e2e_show_failure() {
  E2E_CHECK_FAILED=1
  local desc=$1 expected=$2 rc=$3
  shift 3
  {
    echo "  FAIL: $desc"
    printf '    command:  '
    printf '%q ' "$@"
    echo
    echo "    exit:     $rc"
    echo "    expected: $expected"
    echo "    output:"
    awk 'NR <= 80 {print "      | " $0}' "$E2E_TMP/last.out"
  } >&2
}

_e2e_run() {
  E2E_LAST_CMD=("$@")
  local rc=0
  "$@" >"$E2E_TMP/last.out" 2>&1 || rc=$?
  return $rc
}

expect_ok() {
  local desc=$1
  shift 2
  local rc=0
  _e2e_run "$@" || rc=$?
  if [ $rc -ne 0 ]; then
    _e2e_show_failure "$desc" "success" $rc "$@"
    return 1
  fi
}

expect_out() {
  local desc=$1 re=$2
  shift 3
  local rc=0
  _e2e_run "$@" || rc=$?
  if [ $rc -ne 0 ] || ! grep -Eq -- "$re" "$E2E_TMP/last.out"; then
    _e2e_show_failure "$desc" "success and output matching /$re/" $rc "$@"
    return 1
  fi
}

expect_no_out() {
  local desc=$1 re=$2
  shift 3
  local rc=0
  _e2e_run "$@" || rc=$?
  if [ $rc -ne 0 ] || grep -Eq -- "$re" "$E2E_TMP/last.out"; then
    _e2e_show_failure "$desc" "success and no output matching /$re/" $rc "$@"
    return 1
  fi
}

expect_eq() {
  local desc=$1 want=$2
  shift 3
  local rc=0
  _e2e_run "$@" || rc=$?
  local got
  got=$(cat "$E2E_TMP/last.out")
  if [ $rc -ne 0 ] || [ "$got" != "$want" ]; then
    _e2e_show_failure "$desc" "success and output exactly '$want'" $rc "$@"
    return 1
  fi
}

expect_fail() {
  local desc=$1 re=$2
  shift 3
  local rc=0
  _e2e_run "$@" || rc=$?
  if [ $rc -eq 0 ] || ! grep -Eq -- "$re" "$E2E_TMP/last.out"; then
    _e2e_show_failure "$desc" "failure with output matching /$re/" $rc "$@"
    return 1
  fi
}

# Checks the output of the previous command again, without running anything.
expect_last() {
  local desc=$1 re=$2
  if ! grep -Eq -- "$re" "$E2E_TMP/last.out"; then
    _e2e_show_failure "$desc" "(previous command's) output matching /$re/" "-" "${E2E_LAST_CMD[@]}"
    return 1
  fi
}

expect_not_last() {
  local desc=$1 re=$2
  if grep -Eq -- "$re" "$E2E_TMP/last.out"; then
    _e2e_show_failure "$desc" "(previous command's) output not matching /$re/" "-" "${E2E_LAST_CMD[@]}"
    return 1
  fi
}

wait_for() {
  local desc=$1 secs=$2
  shift 3
  local deadline=$((SECONDS + secs)) rc=0
  while :; do
    rc=0
    _e2e_run "$@" || rc=$?
    [ $rc -eq 0 ] && return 0
    if [ $SECONDS -ge $deadline ]; then
      _e2e_show_failure "$desc" "success within ${secs}s" $rc "$@"
      return 1
    fi
    sleep 0.3
  done
}

# Ends a step as skipped, saying why.
skip_step() {
  echo "  SKIP: $*" >&2
  exit 3
}

step() {
  local name=$1 fn=$2
  e2e_log "STEP $name"
  local rc=0
  set +e
  (
    set -eE
    # A command outside the checks that fails ends the step: say which.
    E2E_CHECK_FAILED=0
    trap '[ "$E2E_CHECK_FAILED" = 1 ] || echo "  step ended by a failing command (line $LINENO): $BASH_COMMAND" >&2' ERR
    "$fn"
  )
  rc=$?
  set -e
  case $rc in
    0) E2E_PASSED+=("$name") ;;
    3) E2E_SKIPPED+=("$name") ;;
    *)
      E2E_FAILED+=("$name")
      e2e_log "FAILED $name"
      ;;
  esac
}

e2e_finish() {
  local s
  echo "==== $E2E_NAME: ${#E2E_PASSED[@]} passed, ${#E2E_FAILED[@]} failed, ${#E2E_SKIPPED[@]} skipped ===="
  for s in "${E2E_PASSED[@]}"; do echo "  pass  $s"; done
  for s in "${E2E_SKIPPED[@]}"; do echo "  skip  $s"; done
  for s in "${E2E_FAILED[@]}"; do echo "  FAIL  $s"; done
  [ ${#E2E_FAILED[@]} -eq 0 ]
}
