#!/usr/bin/env bash
# Standard load set from shared/perf/BASELINE.md against phx-server (release, fixture mounted),
# a fresh server per phase. Writes benches/results/latest.md (table) and latest.jsonl (raw).
#
#   benches/run.sh                 # full: 60 s holds, 20 s echo
#   QUICK=1 benches/run.sh         # development: 10 s holds, 5 s echo, smaller idle-max
#   RUNS=3 benches/run.sh          # each phase 3 times; the table shows the median
#   PHASES="echo-1k fanout-1k" benches/run.sh
#   PROFILE=1 benches/run.sh       # also perf-record the server per phase (top symbols)
#
# Env: RESULTS_DIR (default benches/results), SKIP_BUILD=1, HOLD_SECS, ECHO_SECS, IDLE_MAX (default 19900), RUNS, PHASES, CARGO_TARGET_DIR.
# Only 127.0.0.1 is used; every step is bounded; everything started here is stopped on exit.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
QUICK="${QUICK:-0}"
if [ "$QUICK" = 1 ]; then
  HOLD_SECS="${HOLD_SECS:-10}"; ECHO_SECS="${ECHO_SECS:-5}"; IDLE_MAX="${IDLE_MAX:-19900}"
else
  HOLD_SECS="${HOLD_SECS:-60}"; ECHO_SECS="${ECHO_SECS:-20}"; IDLE_MAX="${IDLE_MAX:-19900}"
fi
RUNS="${RUNS:-1}"
PHASES="${PHASES:-idle-10k idle-max fanout-1k fanout-10k echo-1k}"
PROFILE="${PROFILE:-0}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target-bench}"
BIN="$CARGO_TARGET_DIR/release"
OUT="${RESULTS_DIR:-$ROOT/benches/results}"
mkdir -p "$OUT"
STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
RAW="$OUT/raw-$STAMP.jsonl"
LOG="$OUT/run-$STAMP.log"
: >"$RAW"

SERVER_PID=""
PERF_PID=""
STAT_PID=""
LOADGEN_PID=""
SYSCALL_EVENTS="context-switches,raw_syscalls:sys_enter"
for sc in write writev sendto sendmsg read readv recvfrom epoll_wait epoll_pwait epoll_ctl futex accept4 sched_yield; do
  SYSCALL_EVENTS="$SYSCALL_EVENTS,syscalls:sys_enter_$sc"
done

log() { echo "[run.sh] $*" | tee -a "$LOG" >&2; }

stop_pid() { # pid, seconds to wait after TERM
  local pid="$1" secs="${2:-10}"
  [ -n "$pid" ] || return 0
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 $((secs * 10))); do
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  stop_pid "$LOADGEN_PID" 5
  stop_pid "$PERF_PID" 5
  stop_pid "$STAT_PID" 5
  stop_pid "$SERVER_PID" 10
  LOADGEN_PID=""; PERF_PID=""; STAT_PID=""; SERVER_PID=""
}
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

start_server() {
  PORT="$(free_port)"
  RUST_LOG=warn HOST=127.0.0.1 PORT="$PORT" "$BIN/phx-server" serve --fixture >>"$LOG" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 1 100); do
    port_busy "$PORT" && return 0
    kill -0 "$SERVER_PID" 2>/dev/null || { log "server exited at start"; return 1; }
    sleep 0.1
  done
  log "server did not listen on $PORT within 10 s"; return 1
}

phase_args() {
  case "$1" in
    idle-10k)   echo "idle --sockets 10000 --hold-secs $HOLD_SECS --rss-at-secs $HOLD_SECS" ;;
    idle-max)   echo "idle --sockets $IDLE_MAX --processes 2 --hold-secs $HOLD_SECS --rss-at-secs $HOLD_SECS" ;;
    fanout-1k)  echo "fanout --subscribers 1000 --rounds 20 --interval-ms 500 --pad 200" ;;
    fanout-10k) echo "fanout --subscribers 10000 --rounds 20 --interval-ms 500 --pad 200" ;;
    echo-1k)    echo "echo --sockets 1000 --secs $ECHO_SECS" ;;
    *) return 1 ;;
  esac
}

run_phase() { # name run#
  local name="$1" run="$2" args
  args="$(phase_args "$name")" || { log "unknown phase $name"; return 1; }
  start_server
  sleep 1
  log "phase $name (run $run): server pid $SERVER_PID port $PORT, load $(cut -d' ' -f1-3 /proc/loadavg)"
  log "  loadgen --port $PORT --server-pid <pid> --label $name $args"
  if [ "$PROFILE" = 1 ]; then
    perf record -e cpu-clock -F 999 -p "$SERVER_PID" -o "$OUT/perf-$name.data" >>"$LOG" 2>&1 &
    PERF_PID=$!
    perf stat -x, -o "$OUT/syscalls-$name.csv" -p "$SERVER_PID" -e "$SYSCALL_EVENTS" >>"$LOG" 2>&1 &
    STAT_PID=$!
  fi
  # shellcheck disable=SC2086
  timeout $((HOLD_SECS * 3 + 600)) "$BIN/loadgen" --port "$PORT" --server-pid "$SERVER_PID" \
    --label "$name" $args >>"$RAW" 2> >(tee -a "$LOG" >&2) &
  LOADGEN_PID=$!
  wait "$LOADGEN_PID" || log "loadgen exited non-zero in $name"
  LOADGEN_PID=""
  if [ -n "$PERF_PID" ]; then
    kill -INT "$PERF_PID" 2>/dev/null || true
    wait "$PERF_PID" 2>/dev/null || true
    PERF_PID=""
    kill -INT "$STAT_PID" 2>/dev/null || true
    wait "$STAT_PID" 2>/dev/null || true
    STAT_PID=""
    {
      echo "## $name: server CPU samples by object (perf record -e cpu-clock)"
      perf report -i "$OUT/perf-$name.data" --no-children --sort dso --stdio 2>/dev/null \
        | grep -v '^#' | grep '%' | head -8
      echo "## top symbols"
      perf report -i "$OUT/perf-$name.data" --no-children --sort dso,symbol --stdio 2>/dev/null \
        | grep -v '^#' | grep '%' | head -40
      echo "## server syscalls and context switches over the phase (perf stat)"
      grep -v '^#' "$OUT/syscalls-$name.csv" | grep . | cut -d, -f1,3
    } >"$OUT/profile-$name.txt" 2>&1 || true
    rm -f "$OUT/syscalls-$name.csv"
    rm -f "$OUT/perf-$name.data" "$OUT/perf-$name.data.old"
  fi
  stop_pid "$SERVER_PID" 15
  SERVER_PID=""
}

if [ "${SKIP_BUILD:-0}" != 1 ]; then
  log "building release (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
  cargo build --release -p phx-server -p loadgen 2>&1 | tail -2 | tee -a "$LOG" >&2
fi
REV="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
DIRTY="$(git status --porcelain -- src protocol Cargo.toml 2>/dev/null | wc -l)"
log "server source: commit $REV, $DIRTY uncommitted path(s) under src/ protocol/ (work tree shared with other engineers)"

log "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), QUICK=$QUICK HOLD_SECS=$HOLD_SECS ECHO_SECS=$ECHO_SECS RUNS=$RUNS"
for run in $(seq 1 "$RUNS"); do
  for p in $PHASES; do
    run_phase "$p" "$run"
  done
done

cp "$RAW" "$OUT/latest.jsonl"
python3 "$ROOT/benches/tabulate.py" "$OUT/latest.jsonl" \
  --quick "$QUICK" --hold "$HOLD_SECS" --echo-secs "$ECHO_SECS" \
  --rev "$REV" --dirty "$DIRTY" >"$OUT/latest.md"
log "wrote $OUT/latest.md and $OUT/latest.jsonl (raw: $RAW, log: $LOG)"
cat "$OUT/latest.md"
