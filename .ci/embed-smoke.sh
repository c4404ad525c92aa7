#!/usr/bin/env bash
# Runs service/examples/embed.rs as a lender would: against the simulator, its own `GET /`
# beside the service under /status, a session added and finished through /status/v1, then
# SIGTERM and exit 0.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build -q -p bankconnect-cli --bin bankconnect
cargo build -q -p bankconnect-service --example embed
. .ci/lib.sh
EMBED="$(cd "$TARGET/debug/examples" && pwd)/embed"
WORK=$(mktemp -d)
cleanup() { kill "${EMBED_PID:-}" "${SIM_PID:-}" 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
start_sim
(cd "$WORK" && BANKCONNECT_BASE_URL="$BASE" BANKCONNECT_API_KEY=sim-api-key \
    BANKCONNECT_SERVER_HASH=sim-server-hash exec "$EMBED" >"$WORK/embed.out" 2>"$WORK/embed.err") &
EMBED_PID=$!
for _ in $(seq 100); do [ -s "$WORK/embed.out" ] && break; sleep 0.1; done
URL=$(head -1 "$WORK/embed.out" | sed 's/^listening on //')
[ -n "$URL" ] || { echo "embed did not start" >&2; cat "$WORK/embed.err" >&2; exit 1; }
[ "$(curl -sf "$URL/")" = "lender app" ] || { echo "GET / is not the lender's" >&2; exit 1; }
curl -sf "$URL/status/healthz" | grep -q '"ok"'
curl -sf "$URL/status/openapi.json" | grep -q '/v1/sessions'
# A session of the simulator's built-in scenario that completes.
curl -sf -X POST -H 'content-type: application/json' \
    -d '{"session_id": "sim-completed", "reference": "loan-42"}' "$URL/status/v1/sessions" >/dev/null
STATE=""
for _ in $(seq 150); do
    STATE=$(curl -sf "$URL/status/v1/sessions/sim-completed" | python3 -c 'import json,sys; print(json.load(sys.stdin)["state"])')
    [ "$STATE" = finished ] && break
    sleep 0.1
done
[ "$STATE" = finished ] || { echo "the session did not finish: $STATE" >&2; cat "$WORK/embed.err" >&2; exit 1; }
[ -f "$WORK/bankconnect.db" ] || { echo "no SQLite file in the working directory" >&2; exit 1; }
kill -TERM "$EMBED_PID"
CODE=0; wait "$EMBED_PID" || CODE=$?
EMBED_PID=
[ "$CODE" = 0 ] || { echo "embed exited $CODE after SIGTERM" >&2; cat "$WORK/embed.err" >&2; exit 1; }
echo "embed: lender app and /status served, a session finished, clean exit on SIGTERM"
