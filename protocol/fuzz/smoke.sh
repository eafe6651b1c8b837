#!/usr/bin/env bash
# Builds every phx-protocol fuzz target and runs each for N seconds (default 10).
#
#   protocol/fuzz/smoke.sh            # 10 s per target
#   protocol/fuzz/smoke.sh 60         # 60 s per target
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`). Uses a nightly toolchain when one is installed,
# otherwise stable with RUSTC_BOOTSTRAP=1 (cargo-fuzz passes nightly-only -Z flags).
# Exits non-zero on the first target that crashes; the crashing input is left in
# protocol/fuzz/artifacts/<target>/.
set -euo pipefail

SECS="${1:-10}"
cd "$(dirname "$0")"

if ! command -v cargo-fuzz >/dev/null 2>&1; then
  echo "cargo-fuzz not installed: cargo install cargo-fuzz" >&2
  exit 2
fi

if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  FUZZ=(cargo +nightly fuzz)
else
  export RUSTC_BOOTSTRAP=1
  FUZZ=(cargo fuzz)
fi

TARGETS=(decode_v1 decode_v2_text decode_v2_binary etf_decode token_verify)

"${FUZZ[@]}" build -O

for t in "${TARGETS[@]}"; do
  mkdir -p "corpus/$t"
  echo "== $t (${SECS}s)"
  log="$(mktemp)"
  rc=0
  "${FUZZ[@]}" run -O "$t" "corpus/$t" -- -max_total_time="$SECS" -rss_limit_mb=2048 \
    -print_final_stats=1 >"$log" 2>&1 || rc=$?
  grep -E 'stat::number_of_executed_units|Done [0-9]+ runs' "$log" || true
  if [ "$rc" -ne 0 ]; then
    tail -40 "$log" >&2
    echo "fuzz target $t failed (exit $rc); the input is in protocol/fuzz/artifacts/$t" >&2
    rm -f "$log"
    exit 1
  fi
  rm -f "$log"
done
echo "fuzz: ${#TARGETS[@]} passed, 0 failed"
