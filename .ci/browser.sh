#!/usr/bin/env bash
# The console's browser tests (console-tests/, docs/console.md): Debian's chromium driven by
# playwright-core from npm (pinned in the lock file; never a browser download), against the
# real bankconnect serve and sim. Installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
. .ci/lib.sh
[ -x "$BIN" ] || cargo build -q -p bankconnect-cli
if [ ! -x /usr/bin/chromium ]; then
    echo "installing Debian's chromium"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null
fi
BIN_ABS=$(realpath "$BIN")
cd console-tests
npm ci --no-audit --no-fund --silent
BANKCONNECT_BIN="$BIN_ABS" npm test
