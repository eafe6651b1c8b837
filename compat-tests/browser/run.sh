#!/usr/bin/env bash
# Runs the browser tests (compat-tests/browser/*.test.js: watch, fallback, readme, dashboard): Debian's Chromium driven by
# playwright-core, against a `phx-server serve` (normal mode) that each test file starts itself.
#
#   PHX_SERVER_BIN   server binary (default target/debug/phx-server; relative paths are resolved
#                    against the repository root). Nothing is built here.
#   vendor-js/dist   the built bundle (vendor-js/build.sh), or ASSETS_DIR
#
# Installs Chromium if missing (scripts/browser-deps.sh) and the npm devDependencies if missing.
# Screenshots and the server log go to compat-tests/.logs/.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"

BIN="${PHX_SERVER_BIN:-target/debug/phx-server}"
case "$BIN" in /*) ;; *) BIN="$REPO/$BIN" ;; esac
export PHX_SERVER_BIN="$BIN"
[ -x "$BIN" ] || { echo "browser/run.sh: server binary not found: $BIN (set PHX_SERVER_BIN, or cargo build)" >&2; exit 2; }

export ASSETS_DIR="${ASSETS_DIR:-$REPO/vendor-js/dist}"
[ -s "$ASSETS_DIR/app.js" ] || { echo "browser/run.sh: no bundle at $ASSETS_DIR/app.js (run vendor-js/build.sh)" >&2; exit 2; }

bash "$REPO/scripts/browser-deps.sh"

cd "$HERE/.."
if [ ! -d node_modules/playwright-core ] || [ ! -d node_modules/phoenix ]; then
  npm ci --no-audit --no-fund
fi
mkdir -p .logs
node --test --test-concurrency=1 --test-force-exit --test-reporter=spec browser/*.test.js
