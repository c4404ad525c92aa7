#!/usr/bin/env bash
# Checks the live `bankconnect serve` against its own /openapi.json with schemathesis (PyPI):
# no 5xx on any generated input, every answer matching its documented status, type and schema.
set -euo pipefail
cd "$(dirname "$0")/.."
. .ci/lib.sh
[ -x "$BIN" ] || cargo build -q -p bankconnect-cli
if ! command -v schemathesis >/dev/null 2>&1; then
    python3 -m pip install -q --disable-pip-version-check 'schemathesis>=4,<5' >/dev/null 2>&1 \
        || python3 -m pip install -q --user --disable-pip-version-check 'schemathesis>=4,<5'
    export PATH="$HOME/.local/bin:$PATH"
fi
WORK=$(mktemp -d)
cleanup() { kill "${SERVE_PID:-}" "${SIM_PID:-}" 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
start_sim
BANKCONNECT_BASE_URL="$BASE" BANKCONNECT_API_KEY=sim-api-key BANKCONNECT_SERVER_HASH=sim-server-hash \
    "$BIN" serve --listen 127.0.0.1:0 --store "sqlite:$WORK/serve.db" --interval 200ms \
    >"$WORK/serve.out" 2>"$WORK/serve.err" &
SERVE_PID=$!
for _ in $(seq 100); do [ -s "$WORK/serve.out" ] && break; sleep 0.1; done
URL=$(head -1 "$WORK/serve.out" | sed 's/^listening on //')
[ -n "$URL" ] || { echo "serve did not start" >&2; cat "$WORK/serve.err" >&2; exit 1; }
schemathesis run "$URL/openapi.json" \
    --checks not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance \
    --phases examples,coverage,fuzzing --max-examples 50 --seed 1
