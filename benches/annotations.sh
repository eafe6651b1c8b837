#!/usr/bin/env bash
# The annotation path (Rumbl videos:*) under load: one fresh `phx-server serve --fixture` per
# case, over a throwaway Postgres database (created and dropped here) or the fixture's own
# temp SQLite file. Appends JSON lines to $OUT/annotations.jsonl.
#
#   benches/annotations.sh                       # default cases
#   CASES="pg10 pg20 sqlite pg10-insert" benches/annotations.sh
#   SECS=20 ARGS="--watchers 100 --posters 5" benches/annotations.sh
#
# Cases: pgN (Postgres, POOL_SIZE=N, 20 videos × 100 watchers, 5 posters/video, 1 in flight),
# pgN-insert (100 videos × 1 watcher that posts: the insert path with 1 delivery per
# annotation), sqlite, sqlite-insert.
# Env: ADMIN_URL (default postgres://postgres@127.0.0.1:5432/postgres), SECS (20), ARGS (extra
# loadgen args), OUT (benches/results/annotations), SKIP_BUILD=1, CARGO_TARGET_DIR.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target-bench}"
BIN="$CARGO_TARGET_DIR/release"
ADMIN_URL="${ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
PG_BASE="${ADMIN_URL%/*}"
SECS="${SECS:-20}"
ARGS="${ARGS:-}"
CASES="${CASES:-pg10 pg20 sqlite pg10-insert sqlite-insert}"
OUT="${OUT:-$ROOT/benches/results/annotations}"
mkdir -p "$OUT"
LOG="$OUT/run-$(date -u +%Y%m%dT%H%M%SZ).log"
SERVER_PID=""
DB=""

log() { echo "[annotations.sh] $*" | tee -a "$LOG" >&2; }

stop_server() {
  [ -n "$SERVER_PID" ] || return 0
  if kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
  fi
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=""
}

drop_db() {
  [ -n "$DB" ] || return 0
  psql "$ADMIN_URL" -qAtc "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '$DB'" >/dev/null 2>&1 || true
  psql "$ADMIN_URL" -qc "DROP DATABASE IF EXISTS \"$DB\"" >>"$LOG" 2>&1 || true
  DB=""
}

cleanup() { stop_server; drop_db; }
trap cleanup EXIT
trap 'exit 130' INT TERM

port_busy() { ss -Htln "sport = :$1" 2>/dev/null | grep -q .; }
free_port() {
  local p
  for _ in $(seq 1 200); do
    p=$((20000 + RANDOM % 20000))
    port_busy "$p" || { echo "$p"; return 0; }
  done
  return 1
}

if [ "${SKIP_BUILD:-0}" != 1 ]; then
  cargo build --release -p phx-server -p loadgen 2>&1 | tail -1 | tee -a "$LOG" >&2
fi
REV="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"

for case in $CASES; do
  env_db=()
  pool=""
  shape="--videos 20 --watchers 100 --posters 5 --in-flight 1"
  case "$case" in
    *-insert) shape="--videos 100 --watchers 1 --posters 1 --in-flight 1" ;;
  esac
  case "$case" in
    pg*)
      pool="${case#pg}"; pool="${pool%-insert}"
      DB="phx_bench_ann_$$_$RANDOM"
      psql "$ADMIN_URL" -qc "CREATE DATABASE \"$DB\"" >>"$LOG" 2>&1
      env_db=(DATABASE_URL="$PG_BASE/$DB" POOL_SIZE="$pool")
      ;;
    sqlite*) ;;
    *) log "unknown case $case"; continue ;;
  esac
  PORT="$(free_port)"
  env "${env_db[@]}" RUST_LOG=warn HOST=127.0.0.1 PORT="$PORT" "$BIN/phx-server" serve --fixture >>"$LOG" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 1 100); do port_busy "$PORT" && break; sleep 0.1; done
  port_busy "$PORT" || { log "server did not listen"; stop_server; drop_db; continue; }
  sleep 1
  pgarg=()
  [ -n "$DB" ] && pgarg=(--pg-db "$DB")
  log "case $case (commit $REV): server $SERVER_PID port $PORT db ${DB:-sqlite} pool ${pool:-n/a}, load $(cut -d' ' -f1-3 /proc/loadavg)"
  # shellcheck disable=SC2086
  timeout $((SECS + 300)) "$BIN/loadgen" --port "$PORT" --server-pid "$SERVER_PID" --label "$case" \
    annotations $shape --secs "$SECS" "${pgarg[@]}" $ARGS >>"$OUT/annotations.jsonl" 2> >(tee -a "$LOG" >&2) \
    || log "loadgen exited non-zero in $case"
  stop_server
  drop_db
done
log "results appended to $OUT/annotations.jsonl (log $LOG)"
