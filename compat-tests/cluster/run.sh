#!/usr/bin/env bash
# The cluster suite: three `phx-server serve --fixture` nodes on a Redis of the suite's own (a
# free port; the shared Redis is not touched), driven by the official phoenix client.
#
#   PHX_SERVER_BIN   server binary (default target/debug/phx-server). Nothing is built here.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$HERE/.."
command -v redis-server >/dev/null || { echo "cluster/run.sh: redis-server is required (scripts/services.sh installs it)" >&2; exit 2; }
[ -d node_modules ] || npm ci --no-audit --no-fund
export PHX_SERVER_BIN="$(cd "$HERE/../.." && realpath -m "${PHX_SERVER_BIN:-target/debug/phx-server}")"
[ -x "$PHX_SERVER_BIN" ] || { echo "cluster/run.sh: server binary not found: $PHX_SERVER_BIN" >&2; exit 2; }
exec node --test --test-concurrency=1 --test-force-exit --test-reporter=spec cluster/*.test.js
