#!/usr/bin/env bash
# The one command that runs every test (README "Test"; .ci/run calls exactly this).
#
#   1. services up (PostgreSQL, Redis)           scripts/services.sh
#   2. Rust: fmt check, clippy -D warnings, rustdoc -D warnings, build (bins + examples), unit +
#      integration tests (real Postgres), fuzz targets
#   3. JS assets: npm test + esbuild bundle       vendor-js/
#   4. Black-box conformance suite against `phx-server serve --fixture`, driven by the
#      unmodified phoenix npm client and raw frames (WebSocket, LongPoll, Rumbl videos:*)
#                                                    compat-tests/run.sh
#   5. Hostile-input suite: every limit of README "Limits and failure behaviour", each case with a
#      bystander socket, RSS and log checks              compat-tests/hostile/run.sh
#   6. The Rumbl watch page in headless Chromium (Debian's chromium, installed if missing)
#                                                    compat-tests/browser/run.sh
#   7. Cluster: phx-server nodes on a Redis of their own (a free port), phoenix client on each
#                                                    compat-tests/cluster/run.sh
#
# Stops at the first failing stage and exits non-zero.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"

stage() { printf '\n==== %s ====\n' "$*"; }

stage "services"
bash scripts/services.sh

# Tests that need Postgres create (and drop) their own throwaway databases through this URL.
export DATABASE_URL="${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"

stage "rust: fmt + clippy"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings

stage "rust: docs (missing_docs denied in the library crates; rustdoc warnings are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --workspace --locked

stage "rust: crate boundaries (framework without SQL drivers; no circles of module imports)"
# The framework crate is what teams build on: its dependency tree must not pull a database.
if cargo tree --locked -p phx-channels -e normal,build --prefix none | grep -Ei '^(rusqlite|libsqlite3-sys|tokio-postgres|postgres-|deadpool-postgres|deadpool-sqlite|sqlx|diesel|mysql)'; then
    echo "phx-channels depends on a SQL driver (above); it must not" >&2
    exit 1
fi
python3 scripts/module_cycles.py framework/src rumbl/src fixture/src protocol/src

stage "rust: build"
cargo build --workspace --locked --bins --examples

stage "rust: tests"
cargo test --workspace --locked

stage "fuzz: every target for ${FUZZ_SECONDS:-20} s (cargo-fuzz)"
bash scripts/fuzz.sh

stage "vendor-js: unit tests + bundle"
(cd vendor-js && bash build.sh && npm test)

stage "compat-tests: conformance suite (phoenix npm client + raw frames)"
# The fixture's videos:* store: a temp SQLite file (the Rust tests cover Postgres on throwaway
# databases; this keeps the admin database clean).
env -u DATABASE_URL PHX_SERVER_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/phx-server" bash compat-tests/run.sh

stage "compat-tests: hostile-input suite (raw sockets + raw HTTP; README Limits table)"
env -u DATABASE_URL PHX_SERVER_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/phx-server" bash compat-tests/hostile/run.sh

stage "browser: watch page in headless Chromium (playwright-core)"
env -u DATABASE_URL PHX_SERVER_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/phx-server" bash compat-tests/browser/run.sh

stage "cluster: three phx-server nodes on a Redis of their own (phoenix client, Elixir's captured envelopes)"
env -u DATABASE_URL PHX_SERVER_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/phx-server" bash compat-tests/cluster/run.sh

stage "all test stages passed"
