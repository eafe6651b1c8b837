#!/usr/bin/env bash
# Regenerates the configuration reference in README.md and docs/operating.md from the one
# declaration (framework/src/settings/mod.rs, rumbl/src/config.rs), between the markers
#   <!-- config-reference:start --> ... <!-- config-reference:end -->
# `cargo test --test config_reference` fails when they differ from `phx-server config --markdown`.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet --bin phx-server
table="$(env -i PATH="$PATH" target/debug/phx-server config --markdown)"
for f in README.md docs/operating.md; do
  TABLE="$table" python3 - "$f" <<'PY'
import os, re, sys
path = sys.argv[1]
text = open(path, encoding="utf-8").read()
start, end = "<!-- config-reference:start -->", "<!-- config-reference:end -->"
if start not in text or end not in text:
    sys.exit(f"{path}: markers {start} / {end} missing")
head, rest = text.split(start, 1)
_, tail = rest.split(end, 1)
open(path, "w", encoding="utf-8").write(head + start + "\n" + os.environ["TABLE"].strip("\n") + "\n\n" + end + tail)
print(f"updated {path}")
PY
done
