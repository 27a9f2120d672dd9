#!/usr/bin/env bash
# CTest fixture: one throw-away PostgreSQL cluster per test run.
#   testdb.sh start CORRAL_BIN DIR   wipe DIR, initdb, start (fsync off: test data is disposable)
#   testdb.sh stop  CORRAL_BIN DIR   stop and remove DIR
set -euo pipefail
action=$1 corral=$2 dir=$3
case "$action" in
  start)
    if [ -d "$dir" ]; then "$corral" db stop --data-dir "$dir" >/dev/null 2>&1 || true; rm -rf "$dir"; fi
    "$corral" db start --data-dir "$dir" --set "fsync = off" --set "synchronous_commit = off" \
      --set "full_page_writes = off" --set "max_connections = 400"
    ;;
  stop)
    "$corral" db stop --data-dir "$dir"
    rm -rf "$dir"
    ;;
  *) echo "usage: testdb.sh start|stop CORRAL_BIN DIR" >&2; exit 2 ;;
esac
