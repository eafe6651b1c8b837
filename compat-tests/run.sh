#!/usr/bin/env bash
# Runs the conformance suite against a freshly started `phx-server serve --fixture`.
#
#   PHX_SERVER_BIN   server binary (default target/debug/phx-server; relative paths are resolved
#                    against the repository root). Nothing is built here.
#   run.sh [node test files...]   default: every file in test/
#
# Exit status: non-zero if any test failed, or if the server did not exit 0 within 10 s of SIGTERM.
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$HERE"
LOGDIR="$HERE/.logs"
mkdir -p "$LOGDIR"
# old per-run state directories
find "$LOGDIR" -maxdepth 1 -name 'run-*' -type d -mmin +120 -exec rm -rf {} + 2>/dev/null

for tool in node npm curl setsid; do
  command -v "$tool" >/dev/null || { echo "run.sh: $tool is required" >&2; exit 2; }
done

PHX_PORT="$(node -e '
  const s = require("net").createServer();
  s.listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); });
')"
export PHX_PORT
# per-run state (pidfile, exit status, log) so that concurrent runs cannot interfere;
# .logs/server.log points at the latest run's log
export PHX_STATE_DIR="$LOGDIR/run-$PHX_PORT"
rm -rf "$PHX_STATE_DIR"
mkdir -p "$PHX_STATE_DIR"
: >"$PHX_STATE_DIR/server.log"
ln -sfn "run-$PHX_PORT/server.log" "$LOGDIR/server.log"
export PHX_URL="http://127.0.0.1:$PHX_PORT"
export PHX_RESTART_CMD="$HERE/restart.sh"

tail_log() {
  echo "----- last 80 lines of $PHX_STATE_DIR/server.log -----" >&2
  tail -n 80 "$PHX_STATE_DIR/server.log" >&2
  echo "-----------------------------------------------" >&2
}

if [ ! -d node_modules ]; then
  npm ci --no-audit --no-fund || { echo "run.sh: npm ci failed" >&2; exit 2; }
fi

if ! "$HERE/server-ctl.sh" start; then
  tail_log
  exit 1
fi

stopped=0
cleanup() {
  if [ "$stopped" = 0 ]; then
    "$HERE/server-ctl.sh" stop >/dev/null 2>&1 || true
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ $# -gt 0 ]; then files=("$@"); else files=(test/*.test.js); fi
node --test --test-concurrency=1 --test-force-exit --test-reporter=spec "${files[@]}"
test_rc=$?

"$HERE/server-ctl.sh" stop
stop_rc=$?
stopped=1

if [ $test_rc -ne 0 ] || [ $stop_rc -ne 0 ]; then
  [ $stop_rc -ne 0 ] && echo "run.sh: FAIL: the server did not shut down gracefully (exit 0 within 10 s of SIGTERM)" >&2
  [ $test_rc -ne 0 ] && echo "run.sh: FAIL: conformance tests failed" >&2
  tail_log
  exit 1
fi
echo "run.sh: all conformance tests passed; server drained and exited 0"
