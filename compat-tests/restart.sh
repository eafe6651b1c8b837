#!/usr/bin/env bash
# PHX_RESTART_CMD for the suite: SIGTERM the running fixture server (pidfile in .logs/), wait for
# it to exit, start it again on the same port ($PHX_PORT) and return once it answers.
# Exits non-zero if the old server did not exit 0 within 10 s, or the new one does not come up.
exec "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/server-ctl.sh" restart
