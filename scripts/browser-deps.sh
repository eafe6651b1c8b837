#!/usr/bin/env bash
# Installs what the browser tests (compat-tests/browser/) need from the machine: Debian's
# Chromium at /usr/bin/chromium. Idempotent: does nothing when it is already there.
# playwright-core (the driver) is an npm devDependency of compat-tests and is installed by npm;
# it never downloads a browser of its own here — the tests launch /usr/bin/chromium.
set -euo pipefail

if [ -x /usr/bin/chromium ]; then
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "browser-deps: /usr/bin/chromium is missing and apt-get is not available" >&2
  exit 1
fi

SUDO=""
if [ "$(id -u)" != "0" ]; then
  command -v sudo >/dev/null 2>&1 || { echo "browser-deps: need root (or sudo) to install chromium" >&2; exit 1; }
  SUDO="sudo"
fi

echo "browser-deps: installing chromium from Debian"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
[ -x /usr/bin/chromium ] || { echo "browser-deps: chromium installed but /usr/bin/chromium is missing" >&2; exit 1; }
/usr/bin/chromium --version
