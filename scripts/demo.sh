#!/usr/bin/env bash
# Starts the demo: toolgate on 127.0.0.1:8080 (examples/demo/toolgate.yaml) and the EHR demo
# backend on 127.0.0.1:9001 behind it, prints what to try, and stops both on Ctrl-C.
# toolgate starts first: the backend verifies the identity toolgate injects with toolgate's
# published keys (GET /.well-known/jwks.json), which it fetches when it starts. (toolgate only
# reaches its backend per request, so it does not mind the backend coming up second.)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
CONFIG=examples/demo/toolgate.yaml
RUN=demo-run
mkdir -p "$RUN"

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for p in 8080 9001; do
    if port_busy "$p"; then
        echo "demo: port $p on 127.0.0.1 is in use; stop whatever holds it and run 'make demo' again" >&2
        exit 1
    fi
done

pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    echo "demo: stopped"
}
trap cleanup EXIT INT TERM

[ -x scripts/demo-setup.sh ] && scripts/demo-setup.sh "$BUILD" "$RUN"
"$BUILD/toolgate" check --config "$CONFIG" >/dev/null
"$BUILD/toolgate" serve --config "$CONFIG" 2>"$RUN/toolgate.log" &
pids+=($!)

for _ in $(seq 1 50); do
    if curl -fsS http://127.0.0.1:8080/healthz >/dev/null 2>&1; then break; fi
    sleep 0.1
done
if ! curl -fsS http://127.0.0.1:8080/healthz >/dev/null 2>&1; then
    echo "demo: toolgate did not come up; its log:" >&2
    cat "$RUN/toolgate.log" >&2
    exit 1
fi

"$BUILD/ehr-backend" --listen 127.0.0.1:9001 --mode sse \
    --jwks-url http://127.0.0.1:8080/.well-known/jwks.json \
    --issuer http://127.0.0.1:8080 --audience ehr-backend >"$RUN/ehr-backend.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
    if curl -fsS http://127.0.0.1:9001/healthz >/dev/null 2>&1; then break; fi
    if ! kill -0 "${pids[-1]}" 2>/dev/null; then break; fi
    sleep 0.1
done
if ! curl -fsS http://127.0.0.1:9001/healthz >/dev/null 2>&1; then
    echo "demo: the EHR backend did not come up; its log:" >&2
    cat "$RUN/ehr-backend.log" >&2
    exit 1
fi

AUTH=""
[ -f "$RUN/alice.token" ] && AUTH="-H \"Authorization: Bearer \$(cat $RUN/alice.token)\" "
cat <<TXT

toolgate is running on http://127.0.0.1:8080/mcp in front of the demo EHR backend.
Logs: $RUN/toolgate.log (one JSON object per line) and $RUN/ehr-backend.log.
The backend accepts only the identity toolgate signs for it: calling it directly on
127.0.0.1:9001 without such a token gets 401. The whoami tool shows the verified user.

Try it (copy and paste):

  # 1. start an MCP session; the answer carries an Mcp-Session-Id header
  curl -si http://127.0.0.1:8080/mcp ${AUTH}-H 'Content-Type: application/json' \\
    -H 'Accept: application/json, text/event-stream' \\
    -d '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"curl","version":"1"}}}'

  # 2. list the tools (put the session id from step 1 in SID)
  SID=...; curl -s http://127.0.0.1:8080/mcp ${AUTH}-H "Mcp-Session-Id: \$SID" \\
    -H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream' \\
    -d '{"jsonrpc":"2.0","id":2,"method":"tools/list"}'

  # 3. call a tool
  curl -s http://127.0.0.1:8080/mcp ${AUTH}-H "Mcp-Session-Id: \$SID" \\
    -H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream' \\
    -d '{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"get_patient","arguments":{"patient_id":"P123"}}}'

  # health
  curl -s http://127.0.0.1:8080/healthz

Or point any MCP client (streamable HTTP) at http://127.0.0.1:8080/mcp.
TXT
[ -f "$RUN/demo-notes.txt" ] && cat "$RUN/demo-notes.txt"
echo
echo "Press Ctrl-C to stop."
wait
