#!/usr/bin/env bash
# The one command that runs the demo on a fresh machine: builds the watch page's JS bundle
# (npm: the pinned phoenix client + esbuild), then starts phx-server with the Rumbl app on
# an embedded SQLite file under ./data/ (created and seeded on first start).
# Open http://localhost:4000/login (or http://127.0.0.1:4000/login: with nothing configured the
# demo accepts sockets from loopback pages). Stop with Ctrl-C (drains sockets, exits 0).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash vendor-js/build.sh
exec cargo run --release --locked --bin phx-server -- serve "$@"
