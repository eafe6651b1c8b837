#!/usr/bin/env bash
# Builds every cargo-fuzz target (fuzz/) and runs each for a bounded time; exits non-zero on a
# crash (libFuzzer leaves the input in fuzz/artifacts/<target>/).
#
#   scripts/fuzz.sh                    # every target, FUZZ_SECONDS (default 20) each
#   FUZZ_SECONDS=300 scripts/fuzz.sh params etf
#   FUZZ_RELEASE=1 FUZZ_SECONDS=600 scripts/fuzz.sh session   # optimised build, for long runs
#
# CI builds the targets unoptimised (`--dev`): from a clean checkout that build takes about
# 2.5 minutes here, the optimised one about 11 (the session target compiles the whole server).
# Debug assertions are on either way; an unoptimised target runs fewer inputs per second,
# which a bounded CI run accepts.
#
# cargo-fuzz needs nightly-only compiler flags (sanitizer coverage); RUSTC_BOOTSTRAP=1 lets the
# stable toolchain accept them. Seeds are in fuzz/corpus/<target>/seed-*; what libFuzzer adds
# next to them is not committed (fuzz/.gitignore). The fuzz crate has its own target dir
# (CARGO_TARGET_DIR/fuzz when set, else fuzz/target) so its instrumented build does not
# invalidate the workspace's.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

SECONDS_EACH="${FUZZ_SECONDS:-20}"
BUILD=(--debug-assertions)
[ "${FUZZ_RELEASE:-0}" = 1 ] || BUILD+=(--dev)
ALL=(params frame_v1_json frame_v2_json frame_v2_binary token_verify etf pubsub_envelope session)
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=("${ALL[@]}")

export RUSTC_BOOTSTRAP=1
if [ -n "${CARGO_TARGET_DIR:-}" ]; then
  export CARGO_TARGET_DIR="$CARGO_TARGET_DIR/fuzz"
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz.sh: installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

# Debug assertions on (overflow checks, debug_assert!), one build for all targets.
echo "fuzz.sh: building ${#ALL[@]} targets"
cargo fuzz build "${BUILD[@]}"

failed=()
for t in "${TARGETS[@]}"; do
  mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
  echo "fuzz.sh: $t for ${SECONDS_EACH} s"
  log="fuzz/artifacts/$t/last-run.log"
  # -rss_limit_mb: a decoder that allocates for a forged length fails here as a crash.
  if ! cargo fuzz run "${BUILD[@]}" "$t" -- \
      -max_total_time="$SECONDS_EACH" -rss_limit_mb=2048 -max_len=16384 \
      -print_final_stats=1 >"$log" 2>&1; then
    failed+=("$t")
    tail -n 40 "$log"
  fi
  grep -E '^stat::number_of_executed_units|^Done [0-9]+ runs' "$log" | sed "s/^/fuzz.sh: $t: /" || true
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz.sh: FAIL: crashes in: ${failed[*]} (inputs in fuzz/artifacts/<target>/)"
  exit 1
fi
echo "fuzz.sh: every target ran ${SECONDS_EACH} s without a crash"
