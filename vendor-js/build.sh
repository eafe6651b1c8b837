#!/usr/bin/env bash
# Builds the watch page's assets: vendor-js/dist/app.js (+ .map) and dist/app.css, and the
# admin dashboard's: dist/dashboard/dashboard.js (+ .map) and dist/dashboard/dashboard.css.
# Installs the pinned packages first when node_modules is missing or stale
# (npm ci from package-lock.json; npm install only if there is no lock).
# Idempotent; exits non-zero on any failure; prints the output directory.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

if ! command -v npm >/dev/null 2>&1; then
  echo "build.sh: npm not found (Node.js >= 18 is needed)" >&2
  exit 1
fi

# npm writes node_modules/.package-lock.json on install; if it is older than
# package-lock.json (or absent) the tree is not the locked one.
if [ ! -d node_modules ] || [ ! -f node_modules/.package-lock.json ] \
   || [ package-lock.json -nt node_modules/.package-lock.json ] \
   || [ ! -d node_modules/phoenix ] || [ ! -d node_modules/esbuild ] || [ ! -d node_modules/uplot ]; then
  if [ -f package-lock.json ]; then
    npm ci --no-audit --no-fund
  else
    npm install --no-audit --no-fund
  fi
fi

npm run --silent build
for f in dist/app.js dist/app.js.map dist/app.css \
         dist/dashboard/dashboard.js dist/dashboard/dashboard.js.map dist/dashboard/dashboard.css; do
  [ -s "$f" ] || { echo "build.sh: missing $f" >&2; exit 1; }
done
echo "$(pwd)/dist"
