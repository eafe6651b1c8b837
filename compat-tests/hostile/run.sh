#!/usr/bin/env bash
# The hostile-input suite (issue 10, item 8): starts `phx-server serve --fixture` on a free port
# with the server's DEFAULT limits, then runs every case in compat-tests/hostile/test/ against it
# (cases that need other settings — a small MAX_CONNECTIONS, a Postgres that goes down, `serve`
# with a DATABASE_URL — start their own server from the same binary).
#
#   PHX_SERVER_BIN   server binary (default target/debug/phx-server; relative paths are resolved
#                    against the repository root). Nothing is built here.
#   HOSTILE_SCALE=1  the long variants (10k+ sockets, 100k+ messages; see README.md) — run once
#                    by hand, not in CI.
#   run.sh [test files...]   default: every compat-tests/hostile/test/*.test.js
#
# Exit status: non-zero if any case failed, or if the shared server did not exit 0 within 10 s
# of SIGTERM at the end.
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
COMPAT="$(cd "$HERE/.." && pwd)"
REPO="$(cd "$COMPAT/.." && pwd)"
started_at=$SECONDS

for tool in node npm curl setsid; do
  command -v "$tool" >/dev/null || { echo "hostile/run.sh: $tool is required" >&2; exit 2; }
done

# The busy-channel case holds a SQLite lock with the sqlite3 shell: Debian's, installed when
# missing (as scripts/browser-deps.sh installs Chromium).
if ! command -v sqlite3 >/dev/null; then
  command -v apt-get >/dev/null || { echo "hostile/run.sh: sqlite3 is missing and apt-get is not available" >&2; exit 2; }
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  echo "hostile/run.sh: installing sqlite3 from Debian"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get update -qq &&
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends sqlite3 >/dev/null ||
    { echo "hostile/run.sh: could not install sqlite3" >&2; exit 2; }
fi

BIN="${PHX_SERVER_BIN:-target/debug/phx-server}"
case "$BIN" in /*) ;; *) BIN="$REPO/$BIN" ;; esac
[ -x "$BIN" ] || { echo "hostile/run.sh: server binary not found: $BIN (cargo build first)" >&2; exit 2; }
export PHX_SERVER_BIN="$BIN"

# The server's defaults, not the caller's: default log level (a case asserts what is logged at
# it) and never a database from the environment (scripts/test.sh exports the admin URL).
unset RUST_LOG DATABASE_URL
# Join waves open a few thousand sockets from this process.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

if [ ! -d "$COMPAT/node_modules" ]; then
  (cd "$COMPAT" && npm ci --no-audit --no-fund) || { echo "hostile/run.sh: npm ci failed" >&2; exit 2; }
fi

PHX_PORT="$(node -e '
  const s = require("net").createServer();
  s.listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); });
')"
export PHX_PORT
LOGDIR="$COMPAT/.logs"
mkdir -p "$LOGDIR"
find "$LOGDIR" -maxdepth 1 -name 'hostile-*' -type d -mmin +120 -exec rm -rf {} + 2>/dev/null
export PHX_STATE_DIR="$LOGDIR/hostile-$PHX_PORT"
export HOSTILE_RUN_DIR="$PHX_STATE_DIR"
rm -rf "$PHX_STATE_DIR"
mkdir -p "$PHX_STATE_DIR"
: >"$PHX_STATE_DIR/server.log"
export PHX_URL="http://127.0.0.1:$PHX_PORT"

tail_log() {
  echo "----- last 60 lines of $PHX_STATE_DIR/server.log -----" >&2
  tail -n 60 "$PHX_STATE_DIR/server.log" >&2
  echo "-----------------------------------------------" >&2
}

if ! "$COMPAT/server-ctl.sh" start; then
  tail_log
  exit 1
fi

stopped=0
cleanup() {
  if [ "$stopped" = 0 ]; then "$COMPAT/server-ctl.sh" stop >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cd "$HERE"
if [ $# -gt 0 ]; then files=("$@"); else files=(test/*.test.js); fi
node --test --test-concurrency=1 --test-force-exit --test-timeout=240000 --test-reporter=spec "${files[@]}"
test_rc=$?

"$COMPAT/server-ctl.sh" stop
stop_rc=$?
stopped=1

echo "hostile/run.sh: $((SECONDS - started_at)) s in all; logs in $PHX_STATE_DIR"
if [ $test_rc -ne 0 ] || [ $stop_rc -ne 0 ]; then
  [ $stop_rc -ne 0 ] && echo "hostile/run.sh: FAIL: the shared server did not exit 0 within 10 s of SIGTERM" >&2
  [ $test_rc -ne 0 ] && echo "hostile/run.sh: FAIL: hostile cases failed" >&2
  exit 1
fi
echo "hostile/run.sh: every hostile case passed; the shared server drained and exited 0"
