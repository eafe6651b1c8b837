#!/usr/bin/env bash
# Start / stop / restart the server under test for run.sh and restart.sh.
#
#   server-ctl.sh start     start "$PHX_SERVER_BIN serve --fixture" with HOST=127.0.0.1 PORT=$PHX_PORT,
#                           wait until GET /fixture/token?user_id=1 answers 200 (30 s)
#   server-ctl.sh stop      SIGTERM, wait up to 10 s; exit 1 unless the server exited 0 in time
#   server-ctl.sh restart   stop (graceful or not), then start again on the same port
#
# State lives in $PHX_STATE_DIR (run.sh: compat-tests/.logs/run-<port>/): server.pid, server.exit
# (exit status), server.log — per run, so concurrent runs of the suite do not interfere.
# The server runs in its own session behind a tiny bash wrapper that records its exit status,
# so the status is known even when the process that started it (e.g. restart.sh) has exited.
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$HERE/.." && pwd)"
PORT="${PHX_PORT:?PHX_PORT must be set}"
STATE="${PHX_STATE_DIR:-$HERE/.logs/run-$PORT}"
PIDFILE="$STATE/server.pid"
EXITFILE="$STATE/server.exit"
LOG="$STATE/server.log"
mkdir -p "$STATE"

BIN="${PHX_SERVER_BIN:-target/debug/phx-server}"
case "$BIN" in
  /*) ;;
  *) BIN="$REPO_ROOT/$BIN" ;;
esac
START_TIMEOUT="${PHX_START_TIMEOUT:-30}"
STOP_TIMEOUT="${PHX_STOP_TIMEOUT:-10}"

log() { echo "[server-ctl] $*" >&2; }

is_alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }

start() {
  if [ ! -x "$BIN" ]; then
    log "server binary not found or not executable: $BIN (set PHX_SERVER_BIN, or run cargo build)"
    return 1
  fi
  rm -f "$PIDFILE" "$EXITFILE"
  echo "=== $(date -Is) starting $BIN serve --fixture on 127.0.0.1:$PORT" >>"$LOG"
  HOST=127.0.0.1 PORT="$PORT" setsid bash -c '
      "$1" serve --fixture >>"$2" 2>&1 &
      pid=$!
      echo "$pid" >"$3"
      wait "$pid"
      echo $? >"$4.tmp" && mv "$4.tmp" "$4"
    ' _ "$BIN" "$LOG" "$PIDFILE" "$EXITFILE" </dev/null >/dev/null 2>&1 &
  local deadline=$((SECONDS + START_TIMEOUT))
  while [ ! -s "$PIDFILE" ] && [ $SECONDS -lt $deadline ]; do sleep 0.05; done
  local pid; pid="$(cat "$PIDFILE" 2>/dev/null || true)"
  while [ $SECONDS -lt $deadline ]; do
    if [ -e "$EXITFILE" ]; then
      log "server exited during startup with status $(cat "$EXITFILE")"
      return 1
    fi
    if [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$PORT/fixture/token?user_id=1" 2>/dev/null)" = "200" ]; then
      log "server pid $pid listening on 127.0.0.1:$PORT"
      return 0
    fi
    sleep 0.1
  done
  log "server did not answer GET /fixture/token?user_id=1 with 200 within ${START_TIMEOUT}s"
  is_alive "$pid" && kill -KILL "$pid" 2>/dev/null
  return 1
}

stop() {
  local pid; pid="$(cat "$PIDFILE" 2>/dev/null || true)"
  if [ -z "$pid" ]; then log "no pidfile"; return 1; fi
  if [ -e "$EXITFILE" ]; then
    log "server (pid $pid) had already exited with status $(cat "$EXITFILE") before SIGTERM"
    return 1
  fi
  kill -TERM "$pid" 2>/dev/null
  local deadline=$((SECONDS + STOP_TIMEOUT))
  while [ ! -e "$EXITFILE" ] && [ $SECONDS -lt $deadline ]; do sleep 0.05; done
  if [ ! -e "$EXITFILE" ]; then
    log "server (pid $pid) did not exit within ${STOP_TIMEOUT}s of SIGTERM; killing it"
    kill -KILL "$pid" 2>/dev/null
    local d2=$((SECONDS + 5))
    while [ ! -e "$EXITFILE" ] && [ $SECONDS -lt $d2 ]; do sleep 0.05; done
    return 1
  fi
  local status; status="$(cat "$EXITFILE")"
  if [ "$status" != "0" ]; then
    log "server (pid $pid) exited with status $status after SIGTERM (expected 0)"
    return 1
  fi
  log "server (pid $pid) exited 0 after SIGTERM"
  return 0
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  restart)
    stop; rc=$?
    start || exit 1
    exit $rc
    ;;
  *) echo "usage: $0 start|stop|restart" >&2; exit 2 ;;
esac
