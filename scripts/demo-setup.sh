#!/usr/bin/env bash
# Demo identities: a development signing key (demo-run/keys/) and tokens for two demo users.
# Called by scripts/demo.sh; safe to run again (the key is kept, tokens are minted anew).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
RUN=${2:-demo-run}
TG="$BUILD/toolgate"
ISS="https://idp.demo.toolgate.invalid/"
AUD="http://127.0.0.1:8080/mcp"
mkdir -p "$RUN"
if [ ! -f "$RUN/keys/jwks.json" ]; then
    "$TG" keys generate --alg EdDSA --out "$RUN/keys" >/dev/null
fi
# The gateway's own key for the identities it injects towards the backend.
if [ ! -f "$RUN/egress/private.pem" ]; then
    "$TG" keys generate --alg EdDSA --out "$RUN/egress" >/dev/null
fi
"$TG" token --key "$RUN/keys/private.pem" --iss "$ISS" --aud "$AUD" --sub alice \
    --roles doctor --scopes "tools.read patients.read" --client demo-cli --ttl 12h >"$RUN/alice.token"
"$TG" token --key "$RUN/keys/private.pem" --iss "$ISS" --aud "$AUD" --sub bob \
    --roles billing --scopes "tools.read billing.charge" --client demo-cli --ttl 12h >"$RUN/bob.token"
cat >"$RUN/demo-notes.txt" <<TXT
Two demo users (tokens valid 12 hours, signed by the demo key in $RUN/keys/):
  alice, a doctor:   $RUN/alice.token  (may read patients; writing notes asks for patients.write)
  bob, in billing:   $RUN/bob.token    (may charge cards up to 500; sees no patient tools)
The commands above use alice's token. Try bob's: he gets another tools/list, and
get_patient is answered like a tool that does not exist. Without a token: 401 and a
WWW-Authenticate challenge pointing at
  http://127.0.0.1:8080/.well-known/oauth-protected-resource/mcp
TXT
