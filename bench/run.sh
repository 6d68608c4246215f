#!/usr/bin/env bash
# bench/run.sh BUILD_DIR — toolgate's performance measured against peers in the same run.
#
# `make bench` builds BUILD_DIR/toolgate and BUILD_DIR/ehr-backend, then calls this script.
# Everything runs on loopback; every process started here is stopped on exit, even on failure.
# The report is printed and appended to bench/RESULTS.md. docs/benchmarks.md explains the
# numbers.
#
# Sections (run in this order; BENCH_ONLY=name[,name] runs only those):
#   passthrough      tools/call get_patient, JSON answers: direct, nginx, h2o, toolgate
#   passthrough_sse  the same with the backend answering every POST as an SSE stream
#   idle_rss         toolgate's peak RSS with 1,000 idle keep-alive connections (peers beside it)
#   idle_sessions    toolgate's peak RSS with 10,000 idle connections, each with its own MCP
#                    session (initialize + notifications/initialized on it)
#   cold_start       exec to /readyz 200 with 1,000 policy rules and every safety detector
#   micro            one-command micro-benchmarks of the layers (see section_micro)
#   openloop         fixed-rate load (bench/loadgen.c, no coordinated omission): p50, p99, p99.9
#                    of direct, nginx, h2o and toolgate at one rate, BENCH_OPENLOOP_LOAD of
#                    toolgate's saturation throughput
#   layers           the whole pipeline (limits included) with one layer off in turn, at that
#                    rate: each layer's CPU µs/req (policy and audit have no off switch)
#   workers          toolgate and nginx with 1 and with 2 workers (wrk)
#   mcp_peer         an MCP proxy from npm (bench/mcp-peer, installed by npm ci into
#                    BUILD_DIR/bench/mcp-peer) beside toolgate, wrk and fixed rate
#   audit_scale      only when named in BENCH_ONLY (it takes minutes): a generated audit store
#                    of BENCH_AUDIT_CALLS calls (default 10,000,000; or BENCH_AUDIT_STORE, an
#                    existing generated store): bytes per call, verify, query, stats;
#                    BENCH_AUDIT_BACKEND=postgres generates it in a throwaway loopback
#                    PostgreSQL cluster instead of SQLite; a postgres:// BENCH_AUDIT_STORE is
#                    measured where it is; BENCH_AUDIT_PUBKEY: its checkpoints' public key
#                    (BENCH_AUDIT_GEN_S: the seconds its generation took, for the report);
#                    BENCH_AUDIT_COLD=1 (root, SQLite): the user query once more with the
#                    operating system's page cache dropped first (the whole machine's)
#
# Settings (environment):
#   BENCH_DURATION=10        seconds of each measured wrk run
#   BENCH_WARMUP=2           seconds of an unmeasured wrk run before each measured one
#   BENCH_ROUNDS=1           rounds over all targets (interleaved); tables show medians
#   BENCH_CONNECTIONS=50     wrk connections        BENCH_THREADS=1  wrk threads
#   BENCH_WORKERS=1          workers of each proxy (nginx processes, h2o and toolgate threads)
#   BENCH_BACKEND_WORKERS=1  ehr-backend worker threads
#   BENCH_TARGETS="direct nginx toolgate toolgate_bare"
#                                               the pass-through targets, in run order
#   BENCH_IDLE_CONNECTIONS=1000                 connections held by idle_rss
#   BENCH_IDLE_SESSIONS=10000                   connections (each with a session) of idle_sessions
#   BENCH_COLD_RULES=1000 BENCH_COLD_RUNS=5     policy rules and runs of cold_start
#   BENCH_RSS_TARGETS="toolgate nginx h2o"      servers measured by idle_rss
#   BENCH_RESULTS=bench/RESULTS.md              where the report is appended; "-" = nowhere
#   BENCH_TOOLGATE_CONFIG=bench/peers/toolgate.yaml.in   template of toolgate's config
#   BENCH_AUTHORIZATION="Bearer ..."            sent as Authorization on every MCP request
#   BENCH_BASELINE=PATH      another toolgate binary; the target "baseline" runs it with the
#                            full pipeline beside "toolgate" (before/after a change)
#   BENCH_OPENLOOP_LOAD=0.5  the fixed rate as a fraction of toolgate's saturation req/s
#   BENCH_OPENLOOP_RATE=N    the fixed rate in req/s instead (no saturation run)
#   BENCH_OPENLOOP_TARGETS="direct nginx h2o toolgate"   targets of openloop
#   BENCH_WORKERS_TARGETS="nginx toolgate"               targets of workers
#   BENCH_KEEP=1             keep the temp directory (configs, logs) for inspection
#   BENCH_START_TIMEOUT=10   seconds a server may take to listen (more under valgrind)
#   BENCH_PERF=1             record a perf profile of each toolgate target in each pass-through run
#                            (BUILD_DIR/bench/perf-<section>.<target>.data)
#   BENCH_CALLGRIND=1        run each toolgate target of the pass-through runs under callgrind
#                            (its worker and audit writer threads) and report the instructions
#                            a call of each stage and layer (BUILD_DIR/bench/callgrind/...);
#                            throughput and CPU of such a run are not results
#
# Adding a measurement: write `section_NAME` (it may use the helpers below and writes its part
# of the report with `report`), and add NAME to SECTIONS. A layer micro-benchmark is one line
# in section_micro.

set -euo pipefail

SECTIONS=(passthrough passthrough_sse federation idle_rss idle_sessions cold_start micro openloop layers workers mcp_peer)
# Sections run only when BENCH_ONLY names them.
EXTRA_SECTIONS=(audit_scale)

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$BENCH_DIR/.." && pwd)
BUILD_ARG=${1:-build}
if [[ ! -d $BUILD_ARG ]]; then
    echo "bench: build directory \"$BUILD_ARG\" does not exist; run \`make bench\`" >&2
    exit 2
fi
BUILD_DIR=$(cd "$BUILD_ARG" && pwd)
TOOLGATE=$BUILD_DIR/toolgate
BACKEND=$BUILD_DIR/ehr-backend

BENCH_DURATION=${BENCH_DURATION:-10}
BENCH_WARMUP=${BENCH_WARMUP:-2}
BENCH_CONNECTIONS=${BENCH_CONNECTIONS:-50}
BENCH_THREADS=${BENCH_THREADS:-1}
BENCH_WORKERS=${BENCH_WORKERS:-1}
BENCH_BACKEND_WORKERS=${BENCH_BACKEND_WORKERS:-1}
BENCH_TARGETS=${BENCH_TARGETS:-direct nginx h2o toolgate toolgate_noid toolgate_nosafety toolgate_limits toolgate_queued toolgate_noinject toolgate_traces toolgate_traces_stalled toolgate_bare}
BENCH_IDLE_CONNECTIONS=${BENCH_IDLE_CONNECTIONS:-1000}
BENCH_RSS_TARGETS=${BENCH_RSS_TARGETS:-toolgate nginx h2o}
BENCH_RESULTS=${BENCH_RESULTS:-$REPO/bench/RESULTS.md}
BENCH_TOOLGATE_CONFIG=${BENCH_TOOLGATE_CONFIG:-$BENCH_DIR/peers/toolgate.yaml.in}
BENCH_AUTHORIZATION=${BENCH_AUTHORIZATION:-}
BENCH_KEEP=${BENCH_KEEP:-0}
BENCH_ONLY=${BENCH_ONLY:-}
BENCH_MICRO_TIMEOUT=${BENCH_MICRO_TIMEOUT:-60}
BENCH_ROUNDS=${BENCH_ROUNDS:-1}
BENCH_PERF=${BENCH_PERF:-0}
BENCH_CALLGRIND=${BENCH_CALLGRIND:-0}
# Under valgrind toolgate starts and stops tens of times slower.
if [[ $BENCH_CALLGRIND == 1 ]]; then BENCH_START_TIMEOUT=${BENCH_START_TIMEOUT:-60}; fi
BENCH_OPENLOOP_LOAD=${BENCH_OPENLOOP_LOAD:-0.5}
BENCH_OPENLOOP_RATE=${BENCH_OPENLOOP_RATE:-}
BENCH_OPENLOOP_TARGETS=${BENCH_OPENLOOP_TARGETS:-direct nginx h2o toolgate}
BENCH_WORKERS_TARGETS=${BENCH_WORKERS_TARGETS:-nginx toolgate}
export BENCH_AUTHORIZATION

MCP_PROTOCOL=2025-06-18
NGINX=${NGINX:-/usr/sbin/nginx}
H2O=${H2O:-/usr/bin/h2o}
CLK_TCK=$(getconf CLK_TCK)

# ---------------------------------------------------------------------------------------------
# Process bookkeeping: every background process is recorded and stopped by cleanup().

PIDS=()
TMP=""
REPORT=""

log() { printf 'bench: %s\n' "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

# stop_pid PID [SECONDS]: stops one process we started: SIGTERM, up to SECONDS (5), then SIGKILL.
stop_pid() {
    local pid=$1 secs=${2:-5} i
    [[ -n $pid ]] || return 0
    kill -0 "$pid" 2>/dev/null || {
        wait "$pid" 2>/dev/null || true
        return 0
    }
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < secs * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "pid $pid did not stop on SIGTERM; killing it"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local rc=$? pid
    trap - EXIT INT TERM
    for pid in "${PIDS[@]}"; do
        stop_pid "$pid"
    done
    if [[ -n $TMP && -d $TMP ]]; then
        if [[ $BENCH_KEEP == 1 || $rc != 0 ]]; then
            log "configs and logs kept in $TMP"
        else
            rm -rf "$TMP"
        fi
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# start_bg VAR LOGFILE CMD...: runs CMD in the background, its pid in $VAR.
start_bg() {
    local var=$1 logfile=$2
    shift 2
    "$@" >"$logfile" 2>&1 &
    local pid=$!
    PIDS+=("$pid")
    printf -v "$var" '%s' "$pid"
}

# run_waiting OUT CMD...: runs CMD (stdout and stderr to OUT) and returns its status. CMD runs
# in the background while the script waits for it: bash runs a trap only between commands, but
# it interrupts `wait`, so SIGTERM or Ctrl-C stops the run at once and cleanup stops CMD.
run_waiting() {
    local out=$1 pid rc=0
    shift
    "$@" >"$out" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    wait "$pid" || rc=$?
    forget_pid "$pid"
    return "$rc"
}

forget_pid() {
    local keep=() p
    for p in "${PIDS[@]}"; do
        [[ $p == "$1" ]] || keep+=("$p")
    done
    PIDS=("${keep[@]+"${keep[@]}"}")
}

# stop_bg PID [SECONDS]: stops it now (instead of at exit).
stop_bg() {
    stop_pid "$1" "${2:-5}"
    forget_pid "$1"
}

# stop_bg_wait PID SECONDS: lets it end by itself within SECONDS, then stops it.
stop_bg_wait() {
    local pid=$1 i
    for ((i = 0; i < $2 * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    stop_bg "$pid"
}

# ---------------------------------------------------------------------------------------------
# Ports, readiness, /proc readings.

USED_PORTS=" "
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Listening ports come from below the kernel's ephemeral range: a port in that range may be
# the local end of one of the benchmark's own client connections, and bind() then fails.
read -r EPHEMERAL_LOW _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || EPHEMERAL_LOW=32768
if ((EPHEMERAL_LOW > 12000)); then
    PORT_BASE=10000 PORT_SPAN=$((EPHEMERAL_LOW - 10000))
else
    PORT_BASE=61000 PORT_SPAN=4000
fi

# pick_port VAR: a loopback port nobody listens on, not handed out before in this run.
pick_port() {
    local p i
    for ((i = 0; i < 100; i++)); do
        p=$((PORT_BASE + RANDOM % PORT_SPAN))
        if [[ $USED_PORTS != *" $p "* ]] && ! port_open "$p"; then
            USED_PORTS+="$p "
            printf -v "$1" '%s' "$p"
            return 0
        fi
    done
    die "no free loopback port found"
}

# wait_port PORT PID LOGFILE: until something accepts on PORT (BENCH_START_TIMEOUT s, 10 by
# default; more for a server run under a profiler), or the process died.
wait_port() {
    local port=$1 pid=$2 logfile=$3 i
    for ((i = 0; i < ${BENCH_START_TIMEOUT:-10} * 10; i++)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            sed 's/^/    /' "$logfile" >&2 || true
            die "process $pid exited before listening on port $port (log above)"
        fi
        port_open "$port" && return 0
        sleep 0.1
    done
    sed 's/^/    /' "$logfile" >&2 || true
    die "nothing listens on port $port after ${BENCH_START_TIMEOUT:-10} s (log above)"
}

# The process and its direct children (nginx's master and workers).
proc_tree() {
    local pid=$1
    echo "$pid"
    pgrep -P "$pid" 2>/dev/null || true
}

# CPU time (clock ticks, user + system) used so far by a process tree.
proc_tree_ticks() {
    local total=0 p t
    for p in $(proc_tree "$1"); do
        # Fields after "pid (comm) ": utime and stime are the 12th and 13th.
        t=$(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null | awk '{print $12 + $13}') || t=0
        total=$((total + ${t:-0}))
    done
    echo "$total"
}

# proc_tree_kib PID FIELD: sum of a /proc/PID/status field (VmRSS, VmHWM) over the tree, KiB.
proc_tree_kib() {
    local total=0 p v
    for p in $(proc_tree "$1"); do
        v=$(awk -v f="$2:" '$1 == f {print $2}' "/proc/$p/status" 2>/dev/null) || v=0
        total=$((total + ${v:-0}))
    done
    echo "$total"
}

fill_template() { # fill_template IN OUT NAME=VALUE...
    local in=$1 out=$2 expr=() kv
    shift 2
    for kv in "$@"; do
        expr+=(-e "s|@${kv%%=*}@|${kv#*=}|g")
    done
    sed "${expr[@]}" "$in" >"$out"
    local left
    left=$(grep -v "^[[:space:]]*#" "$out" | grep -o "@[A-Z_]*@" | sort -u | tr "\n" " ") || true
    if [[ -n $left ]]; then
        die "$in: unfilled fields left: $left"
    fi
}

fmt_ms() { awk -v us="$1" 'BEGIN { printf "%.2f", us / 1000 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }

report() { printf '%s\n' "$*" >>"$REPORT"; }

# ---------------------------------------------------------------------------------------------
# The backend and the MCP session.

# start_backend MODE: ehr-backend in json or sse mode; sets BACKEND_PORT and BACKEND_PID.
start_backend() {
    local mode=$1
    pick_port BACKEND_PORT
    start_bg BACKEND_PID "$TMP/backend-$mode.log" "$BACKEND" --listen "127.0.0.1:$BACKEND_PORT" \
        --mode "$mode" --workers "$BENCH_BACKEND_WORKERS" --quiet
    wait_port "$BACKEND_PORT" "$BACKEND_PID" "$TMP/backend-$mode.log"
}

MCP_HEADERS=(-H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream')

mcp_post() { # mcp_post URL BODY OUT_HEADERS OUT_BODY [SESSION]: prints the HTTP status
    local url=$1 body=$2 hdr=$3 out=$4 session=${5:-} extra=()
    [[ -n $session ]] && extra+=(-H "Mcp-Session-Id: $session" -H "MCP-Protocol-Version: $MCP_PROTOCOL")
    [[ -n $BENCH_AUTHORIZATION ]] && extra+=(-H "Authorization: $BENCH_AUTHORIZATION")
    curl -sS --max-time 5 -X POST "${MCP_HEADERS[@]}" "${extra[@]}" -D "$hdr" -o "$out" \
        -w '%{http_code}' --data-binary "$body" "$url" || echo 000
}

TOOLS_CALL_BODY='{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"get_patient","arguments":{"patient_id":"P42"}}}'

# mcp_session URL: initialize + notifications/initialized + tools/list through URL, then one
# checked tools/call; sets SESSION. Every target gets its own session, made through that target.
mcp_session() {
    local url=$1 code
    code=$(mcp_post "$url" '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"'$MCP_PROTOCOL'","capabilities":{},"clientInfo":{"name":"toolgate-bench","version":"1"}}}' \
        "$TMP/init.h" "$TMP/init.b")
    [[ $code == 200 ]] || die "initialize via $url answered $code: $(head -c 300 "$TMP/init.b" 2>/dev/null)"
    SESSION=$(tr -d '\r' <"$TMP/init.h" | awk -F': *' 'tolower($1) == "mcp-session-id" {print $2}')
    [[ -n $SESSION ]] || die "initialize via $url returned no Mcp-Session-Id"
    code=$(mcp_post "$url" '{"jsonrpc":"2.0","method":"notifications/initialized"}' \
        "$TMP/notif.h" "$TMP/notif.b" "$SESSION")
    [[ $code == 202 || $code == 200 ]] || die "notifications/initialized via $url answered $code"
    # As clients do: list the tools before calling one (toolgate refuses a call to a tool the
    # session was never shown, integrity.unlisted).
    code=$(mcp_post "$url" '{"jsonrpc":"2.0","id":2,"method":"tools/list"}' "$TMP/list.h" "$TMP/list.b" "$SESSION")
    [[ $code == 200 ]] || die "tools/list via $url answered $code: $(head -c 300 "$TMP/list.b" 2>/dev/null)"
    code=$(mcp_post "$url" "${SESSION_CHECK_BODY:-$TOOLS_CALL_BODY}" "$TMP/call.h" "$TMP/call.b" "$SESSION")
    if [[ $code != 200 ]] || ! grep -q '"result"' "$TMP/call.b" || ! grep -q 'P42' "$TMP/call.b"; then
        die "tools/call get_patient via $url answered $code: $(head -c 300 "$TMP/call.b")"
    fi
}

# ---------------------------------------------------------------------------------------------
# Targets: start_<target> sets TARGET_URL and TARGET_PID (the process whose CPU is counted).
# `direct` is the backend itself.

start_direct() {
    TARGET_URL="http://127.0.0.1:$BACKEND_PORT/mcp"
    TARGET_PID=$BACKEND_PID
}

start_nginx() {
    local port buffering=on
    [[ $1 == sse ]] && buffering=off
    pick_port port
    mkdir -p "$TMP/nginx"
    fill_template "$BENCH_DIR/peers/nginx.conf.in" "$TMP/nginx/nginx.conf" \
        "DIR=$TMP/nginx" "PORT=$port" "BACKEND_PORT=$BACKEND_PORT" "WORKERS=$BENCH_WORKERS" \
        "BUFFERING=$buffering"
    start_bg TARGET_PID "$TMP/nginx/stderr.log" "$NGINX" -p "$TMP/nginx" -e "$TMP/nginx/nginx-error.log" \
        -c "$TMP/nginx/nginx.conf"
    wait_port "$port" "$TARGET_PID" "$TMP/nginx/stderr.log"
    TARGET_URL="http://127.0.0.1:$port/mcp"
}

start_h2o() {
    local port
    pick_port port
    mkdir -p "$TMP/h2o"
    fill_template "$BENCH_DIR/peers/h2o.conf.in" "$TMP/h2o/h2o.conf" \
        "DIR=$TMP/h2o" "PORT=$port" "BACKEND_PORT=$BACKEND_PORT" "WORKERS=$BENCH_WORKERS"
    # `user:` only matters when started as root (h2o would otherwise switch to nobody, who
    # cannot reach the temp directory); a non-root h2o refuses to switch users at all.
    [[ $EUID == 0 ]] || sed -i '/^user:/d' "$TMP/h2o/h2o.conf"
    start_bg TARGET_PID "$TMP/h2o/stderr.log" "$H2O" -m worker -c "$TMP/h2o/h2o.conf"
    wait_port "$port" "$TARGET_PID" "$TMP/h2o/stderr.log"
    TARGET_URL="http://127.0.0.1:$port/mcp"
}

# The toolgate configuration's switchable parts, per target: the full pipeline, and one layer
# changed at a time so its cost shows as a ratio against "toolgate" in the same run.
LIMITS_ON='limits: {ledger: "sqlite:@DIR@/ledger.db", rate: [{per: user, limit: 100000000, window: 1s}], costs: {default: 0.000001}, budgets: [{per: user, cap: 1000000, period: day}]}'
TOOLGATE_ALL_LAYERS=0
IDENTITY_ON='{issuers: [{issuer: "https://idp.bench.invalid/", audiences: ["http://toolgate.bench.invalid/mcp"], jwks_file: "@KEYS@/idp/jwks.json", algorithms: [EdDSA]}]}'
declare -A VARIANT_NOTE=(
    [toolgate_noid]="identity off (no token verified; policy without a role condition)"
    [toolgate_nosafety]="safety off (no PII scanning of arguments or results)"
    [toolgate_limits]="limits on (a per-user rate limit and a daily budget, memory store)"
    [toolgate_nolimits]="limits off (no limits section)"
    [toolgate_queued]="audit.durability: queued (answers not held for their record)"
    [toolgate_noinject]="inject: none (no gateway-signed JWT for the backend)"
    [toolgate_traces]="traces on (every request's 8 spans exported over OTLP/HTTP to a loopback sink)"
    [toolgate_traces_stalled]="traces on, the collector accepts connections and never answers (spans dropped)"
    [toolgate_bare]="every layer off that can be (no identity, safety, integrity or injection; a permit-all policy; audit queued)"
    [baseline]="the BENCH_BASELINE build, full pipeline"
)
VARIANTS=(toolgate_noid toolgate_nosafety toolgate_limits toolgate_queued toolgate_noinject toolgate_traces toolgate_traces_stalled toolgate_bare baseline)

start_toolgate() { # start_toolgate [MODE] [VARIANT]
    local port variant=${2:-toolgate} identity=$IDENTITY_ON safety='{}' principal=', roles_any: [bench]'
    local limits='' durability=commit inject='{mode: jwt, audience: "ehr-backend"}' telemetry='' integrity=enforce
    # The layers section runs every variant with limits on too (all six layers configured).
    if [[ $TOOLGATE_ALL_LAYERS == 1 ]]; then limits=$LIMITS_ON; fi
    local backends="[{name: ehr, url: \"http://127.0.0.1:$BACKEND_PORT/mcp\"}]"
    case $variant in
    toolgate_noid) identity='{mode: "off"}' principal='' ;;
    toolgate_nosafety) safety='{enabled: false}' ;;
    toolgate_limits) limits=$LIMITS_ON ;;
    toolgate_nolimits) limits='' ;;
    toolgate_queued) durability=queued ;;
    toolgate_noinject) inject='{mode: none}' ;;
    toolgate_bare)
        # What cannot be switched off stays at its cheapest: a policy that permits every call
        # (without one every call is denied) and the audit log, queued (it has no off switch).
        identity='{mode: "off"}' principal='' safety='{enabled: false}' inject='{mode: none}'
        durability=queued integrity='"off"'
        ;;
    toolgate_traces)
        start_otlp_sink
        telemetry="telemetry: {traces: {endpoint: \"http://127.0.0.1:$SINK_PORT\", sample: 1.0}}"
        ;;
    toolgate_traces_stalled)
        start_otlp_sink stall
        telemetry="telemetry: {traces: {endpoint: \"http://127.0.0.1:$STALL_PORT\", sample: 1.0, timeout: 30s, shutdown: 1s}}"
        ;;
    toolgate_federated)
        backends="[{name: ehr, url: \"http://127.0.0.1:$BACKEND_PORT/mcp\", prefix: \"ehr.\"}, {name: two, url: \"http://127.0.0.1:$BACKEND2_PORT/mcp\", prefix: \"two.\"}]"
        ;;
    esac
    pick_port port
    mkdir -p "$TMP/$variant"
    fill_template "$BENCH_TOOLGATE_CONFIG" "$TMP/$variant/toolgate.yaml" \
        "IDENTITY=$identity" "SAFETY=$safety" "POLICY_PRINCIPAL=$principal" \
        "LIMITS_SECTION=$limits" "TELEMETRY_SECTION=$telemetry" "DURABILITY=$durability" "INJECT=$inject" "INTEGRITY_MODE=$integrity" "BACKENDS=$backends" \
        "DIR=$TMP/$variant" "PORT=$port" "BACKEND_PORT=$BACKEND_PORT" "WORKERS=$BENCH_WORKERS" \
        "KEYS=$TMP/keys"
    local run=("$TOOLGATE")
    if [[ $CALLGRIND_RUN == 1 ]]; then
        # One directory per start; callgrind writes a file per thread when toolgate exits.
        CALLGRIND_DIR=$BUILD_DIR/bench/callgrind/$variant.$((++CALLGRIND_STARTS))
        rm -rf "$CALLGRIND_DIR"
        mkdir -p "$CALLGRIND_DIR"
        run=(valgrind --tool=callgrind --separate-threads=yes --toggle-collect=worker_thread
            --toggle-collect=writer_main --callgrind-out-file="$CALLGRIND_DIR/cg.out" "$TOOLGATE")
    fi
    start_bg TARGET_PID "$TMP/$variant/toolgate.log" "${run[@]}" serve --config "$TMP/$variant/toolgate.yaml"
    wait_port "$port" "$TARGET_PID" "$TMP/$variant/toolgate.log"
    TARGET_URL="http://127.0.0.1:$port/mcp"
}
start_toolgate_noid() { start_toolgate "${1:-}" toolgate_noid; }
start_toolgate_nosafety() { start_toolgate "${1:-}" toolgate_nosafety; }
start_toolgate_limits() { start_toolgate "${1:-}" toolgate_limits; }
start_toolgate_nolimits() { start_toolgate "${1:-}" toolgate_nolimits; }
start_toolgate_queued() { start_toolgate "${1:-}" toolgate_queued; }
start_toolgate_noinject() { start_toolgate "${1:-}" toolgate_noinject; }
start_toolgate_bare() { start_toolgate "${1:-}" toolgate_bare; }
start_toolgate_traces() { start_toolgate "${1:-}" toolgate_traces; }
start_toolgate_traces_stalled() { start_toolgate "${1:-}" toolgate_traces_stalled; }
# The trace collector stand-in of toolgate_traces (bench/peers/otlp-sink.mjs), started once.
# start_otlp_sink [stall]: the answering sink on SINK_PORT, or the stalling one on STALL_PORT.
SINK_PORT="" SINK_PID="" STALL_PORT="" STALL_PID=""
start_otlp_sink() {
    if [[ ${1:-} == stall ]]; then
        [[ -n $STALL_PORT ]] && return 0
        pick_port STALL_PORT
        start_bg STALL_PID "$TMP/otlp-stall.log" node "$BENCH_DIR/peers/otlp-sink.mjs" "$STALL_PORT" stall
        wait_port "$STALL_PORT" "$STALL_PID" "$TMP/otlp-stall.log"
        return 0
    fi
    [[ -n $SINK_PORT ]] && return 0
    pick_port SINK_PORT
    start_bg SINK_PID "$TMP/otlp-sink.log" node "$BENCH_DIR/peers/otlp-sink.mjs" "$SINK_PORT"
    wait_port "$SINK_PORT" "$SINK_PID" "$TMP/otlp-sink.log"
}
start_toolgate_federated() { start_toolgate "${1:-}" toolgate_federated; }
# Another build of toolgate (BENCH_BASELINE=path/to/toolgate) with the full pipeline, so a
# change is measured against what it changes in the same run.
start_baseline() {
    local TOOLGATE=$BENCH_BASELINE
    start_toolgate "${1:-}" baseline
}

# Why a target cannot run here, or nothing.
target_missing() {
    case $1 in
    direct | toolgate | toolgate_noid | toolgate_nosafety | toolgate_limits | toolgate_nolimits | \
        toolgate_queued | toolgate_noinject | toolgate_bare | toolgate_federated) ;;
    mcp_passthrough) mcp_peer_missing ;;
    toolgate_traces | toolgate_traces_stalled) command -v node >/dev/null || echo "node not installed (the trace sink)" ;;
    nginx) [[ -x $NGINX ]] || echo "nginx not installed ($NGINX)" ;;
    h2o) [[ -x $H2O ]] || echo "h2o not installed ($H2O)" ;;
    baseline) [[ -n ${BENCH_BASELINE:-} && -x ${BENCH_BASELINE:-} ]] ||
        echo "BENCH_BASELINE does not name a toolgate binary" ;;
    *) echo "unknown target" ;;
    esac
}

# ---------------------------------------------------------------------------------------------
# Callgrind (BENCH_CALLGRIND=1): instructions a call, by stage and by layer. Instruction counts
# repeat from run to run whatever else the machine does, so they compare two builds where
# wall-clock numbers on a shared machine cannot.

# CALLGRIND_RUN: set by passthrough_run, so only the pass-through runs go under valgrind.
CALLGRIND_RUN=0 CALLGRIND_STARTS=0 CALLGRIND_DIR=""
declare -A CG_REPORT
# "function|what": inclusive instructions, divided by the calls (the worker's stages) or by
# the records (the writer's). A function the compiler inlined into its caller has no entry of
# its own in the profile and shows as "—".
# shellcheck disable=SC2034 # read through cg_rows' nameref
CG_WORKER_STAGES=(
    "worker_thread|the worker thread, everything"
    "http1_feed|the client's request read and parsed (HTTP/1.1)"
    "mcp_decode|the request decoded (JSON-RPC, MCP)"
    "gw_pipeline_start|the request's layers, together"
    "identity_check|- identity"
    "safety_check|- safety, arguments"
    "policy_check|- policy"
    "limits_check|- limits"
    "routing_check|- routing (egress check, identity injection)"
    "audit_check|- audit, the decision record built and queued"
    "upstream_start|the request sent to the backend"
    "upstream_h1_reader_feed|the backend's answer read"
    "mcp_parse_message|the answer parsed"
    "gw_pipeline_response|the answer's layers, together"
    "safety_on_response|- safety, result"
    "limits_on_response|- limits"
    "audit_on_response|- audit, the result's hash"
    "mcp_json_write|a changed message written"
    "gw_pipeline_complete|completion (audit's completion record)"
)
# shellcheck disable=SC2034 # read through cg_rows' nameref
CG_WRITER_STAGES=(
    "writer_main|the audit writer thread, everything"
    "audit_codec_encode|- the record packed (codec, zstd)"
    "audit_chain_hash_with|- the chain hash"
    "lite_append|- the SQLite insert"
    "audit_codec_train|- the zstd dictionary's training (once per store: leave it out to compare)"
)

# cg_calls FILE FUNCTION: the calls FUNCTION received, from a raw callgrind file (names are
# compressed: "(id) name" the first time, "(id)" after).
cg_calls() {
    awk -v want="$2" '
        function nm(s,   p, id, rest) {
            p = index(s, ")")
            id = substr(s, 2, p - 2)
            rest = substr(s, p + 2)
            if (rest != "") names[id] = rest
            return names[id]
        }
        /^fn=\(/ { nm(substr($0, 4)) }
        /^cfn=\(/ { target = nm(substr($0, 5)) }
        /^calls=/ { if (target == want) { split(substr($0, 7), a, " "); n += a[1] } }
        END { print n + 0 }' "$1"
}

# cg_inclusive FILE...: "function instructions" (inclusive, summed over the files) for every
# function callgrind_annotate lists with its object.
cg_inclusive() {
    local f
    for f in "$@"; do
        callgrind_annotate --inclusive=yes --threshold=100 "$f" 2>/dev/null | awk '
            /^ *[0-9,]+ +\(/ && / \[/ {
                n = $1
                gsub(",", "", n)
                fn = $0
                sub(/ \[.*$/, "", fn)
                sub(/.*:/, "", fn)
                if (!(fn in seen)) { seen[fn] = 1; print fn, n }
            }'
    done | awk '{ sum[$1] += $2 } END { for (f in sum) print f, sum[f] }'
}

# cg_per INCLUSIVE_FILE FUNCTION DIVISOR: FUNCTION's instructions / DIVISOR, in thousands
# ("—" when the profile has no entry for it or there is nothing to divide by).
cg_per() {
    awk -v f="$2" -v d="$3" '$1 == f && d > 0 { printf "%.1fk", $2 / d / 1000; found = 1 }
        END { if (!found) print "—" }' "$1"
}

# cg_rows STAGES_ARRAY_NAME INCLUSIVE_FILE DIVISOR: the table rows of those stages.
cg_rows() {
    local -n stages=$1
    local entry fn
    for entry in "${stages[@]}"; do
        fn=${entry%%|*}
        printf '| %s | `%s` | %s |\n' "${entry#*|}" "$fn" "$(cg_per "$2" "$fn" "$3")"
    done
}

# callgrind_summary NAME DIR: CG_REPORT[NAME], the table of one toolgate run under callgrind
# (the last round's, when there are several: the counts repeat).
callgrind_summary() {
    local name=$1 dir=$2 f workers=() writers=() calls=0 records=0 signatures=0 inc text
    for f in "$dir"/cg.out-*; do
        [[ -s $f ]] || continue
        if grep -Eq '^c?fn=\([0-9]+\) worker_thread$' "$f"; then
            workers+=("$f")
        elif grep -Eq '^c?fn=\([0-9]+\) writer_main$' "$f"; then
            writers+=("$f")
        fi
    done
    if ((${#workers[@]} == 0)); then
        CG_REPORT[$name]="- $name: no callgrind profile of the worker in $dir (see the toolgate log)"
        return 0
    fi
    for f in "${workers[@]}"; do calls=$((calls + $(cg_calls "$f" upstream_start))); done
    for f in "${writers[@]}"; do
        records=$((records + $(cg_calls "$f" audit_codec_encode)))
        signatures=$((signatures + $(cg_calls "$f" audit_sign_with)))
    done
    inc=$dir/inclusive.txt
    cg_inclusive "${workers[@]}" >"$inc.worker"
    cg_inclusive "${writers[@]+"${writers[@]}"}" </dev/null >"$inc.writer"
    text="#### ${name#*.} under callgrind: instructions a call"$'\n\n'
    text+="$calls calls (calls into \`upstream_start\`), $records audit records (into \`audit_codec_encode\`),"
    text+=" $signatures checkpoint signatures; profiles in $dir"$'\n\n'
    text+="| stage | function | instructions |"$'\n'"|---|---|---:|"$'\n'
    text+=$(cg_rows CG_WORKER_STAGES "$inc.worker" "$calls")$'\n'
    if ((${#writers[@]} > 0 && records > 0)); then
        text+="| **a record, in the audit writer** | | |"$'\n'
        text+=$(cg_rows CG_WRITER_STAGES "$inc.writer" "$records")$'\n'
        text+="| a checkpoint's signature, each | \`audit_sign_with\` | $(cg_per "$inc.writer" audit_sign_with "$signatures") |"$'\n'
    fi
    CG_REPORT[$name]=$text
    log "callgrind of $name: $calls calls, worker $(awk '$1 == "worker_thread" { print $2 }' "$inc.worker") instructions, profiles in $dir"
}

# ---------------------------------------------------------------------------------------------
# wrk.

# run_wrk NAME URL PID: warm-up run, then the measured run; appends this round's numbers to
# L_<field>[NAME] (space-separated, one per round).
declare -A L_RPS L_P50 L_P99 L_CPU L_STATUS L_SOCK
run_wrk() {
    local name=$1 url=$2 pid=$3 out=$TMP/wrk-$1.out t0 t1 line cpu
    local args=(-t "$BENCH_THREADS" -c "$BENCH_CONNECTIONS" --latency -s "$BENCH_DIR/tools-call.lua")
    if ((BENCH_WARMUP > 0)); then
        run_waiting "$TMP/wrk-$name-warmup.out" env BENCH_SESSION="$SESSION" \
            timeout $((BENCH_WARMUP + 30)) wrk "${args[@]}" -d "${BENCH_WARMUP}s" "$url" ||
            die "wrk warm-up against $name failed: $(tail -3 "$TMP/wrk-$name-warmup.out")"
    fi
    local perf_pid="" perf_out=$BUILD_DIR/bench/perf-$name.data
    if [[ $BENCH_PERF == 1 && $name == *.toolgate* ]] && command -v perf >/dev/null; then
        # Samples toolgate during the measured run (DWARF unwinding: the build keeps frame
        # pointers out); `perf report -i FILE` reads it afterwards.
        mkdir -p "$BUILD_DIR/bench"
        rm -f "$perf_out" "$perf_out.old"
        start_bg perf_pid "$TMP/perf-$name.log" perf record -F 999 --call-graph dwarf,16384 \
            -p "$pid" -o "$perf_out" -- sleep "$BENCH_DURATION"
    fi
    t0=$(proc_tree_ticks "$pid")
    run_waiting "$out" env BENCH_SESSION="$SESSION" \
        timeout $((BENCH_DURATION + 30)) wrk "${args[@]}" -d "${BENCH_DURATION}s" --timeout 10s "$url" ||
        die "wrk against $name failed: $(tail -3 "$out")"
    t1=$(proc_tree_ticks "$pid")
    if [[ -n $perf_pid ]]; then
        stop_bg_wait "$perf_pid" 30
        log "profile of $name: perf report -i $perf_out"
    fi
    line=$(grep '^BENCH_RESULT ' "$out") || die "wrk against $name printed no result: $(tail -3 "$out")"
    local requests rps p50 p99 e_conn e_read e_write e_status e_timeout
    requests=$(wrk_field "$line" requests)
    rps=$(wrk_field "$line" rps)
    p50=$(wrk_field "$line" p50_us)
    p99=$(wrk_field "$line" p99_us)
    e_conn=$(wrk_field "$line" errors_connect)
    e_read=$(wrk_field "$line" errors_read)
    e_write=$(wrk_field "$line" errors_write)
    e_status=$(wrk_field "$line" errors_status)
    e_timeout=$(wrk_field "$line" errors_timeout)
    cpu=$(awk -v t=$((t1 - t0)) -v hz="$CLK_TCK" -v n="$requests" \
        'BEGIN { if (n > 0) printf "%.1f", t / hz * 1e6 / n; else print 0 }')
    L_RPS[$name]+=" $rps"
    L_P50[$name]+=" $p50"
    L_P99[$name]+=" $p99"
    L_CPU[$name]+=" $cpu"
    L_STATUS[$name]=$((${L_STATUS[$name]:-0} + e_status))
    L_SOCK[$name]=$((${L_SOCK[$name]:-0} + e_conn + e_read + e_write + e_timeout))
    log "$name: $rps req/s, p50 $(fmt_ms "$p50") ms, p99 $(fmt_ms "$p99") ms, CPU $cpu us/req, errors $e_status non-2xx"
}

# wrk_field LINE NAME: the value of NAME=... in a BENCH_RESULT line.
wrk_field() { sed -n "s/.* $2=\([0-9.]*\).*/\1/p" <<<"$1"; }

# The median of a space-separated list of numbers.
median() {
    tr ' ' '\n' <<<"$1" | awk 'NF' | sort -g | awk '{ v[NR] = $1 } END {
        if (NR == 0) print ""; else if (NR % 2) print v[(NR + 1) / 2];
        else printf "%.2f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# R_<field>[NAME]: the medians over the rounds, which the tables and ratios use.
declare -A R_RPS R_P50 R_P99 R_CPU R_ERR
summarize() {
    local name=$1
    R_RPS[$name]=$(median "${L_RPS[$name]}")
    R_P50[$name]=$(median "${L_P50[$name]}")
    R_P99[$name]=$(median "${L_P99[$name]}")
    R_CPU[$name]=$(median "${L_CPU[$name]}")
    R_ERR[$name]=0
    if ((L_STATUS[$name] + L_SOCK[$name] > 0)); then
        R_ERR[$name]="${L_STATUS[$name]} non-2xx, ${L_SOCK[$name]} socket"
    fi
}

# passthrough_run MODE KEY TITLE: every target in turn against one backend, BENCH_ROUNDS times
# (targets interleaved, so a burst of noise from elsewhere hits one round, not one target);
# one table of medians.
passthrough_run() {
    local mode=$1 key=$2 title=$3 target why round
    CALLGRIND_RUN=$BENCH_CALLGRIND
    start_backend "$mode"
    report ""
    report "### $title"
    report ""
    report "| target | req/s | p50 ms | p99 ms | server CPU µs/req | errors |"
    report "|---|---:|---:|---:|---:|---|"
    for ((round = 1; round <= BENCH_ROUNDS; round++)); do
        for target in $BENCH_TARGETS; do
            [[ -z $(target_missing "$target") ]] || continue
            log "$key: $target (round $round of $BENCH_ROUNDS)"
            "start_$target" "$mode"
            mcp_session "$TARGET_URL"
            run_wrk "$key.$target" "$TARGET_URL" "$TARGET_PID"
            if [[ $CALLGRIND_RUN == 1 && ($target == toolgate* || $target == baseline) ]]; then
                stop_bg "$TARGET_PID" 120 # callgrind writes its files as toolgate exits
                callgrind_summary "$key.$target" "$CALLGRIND_DIR"
            else
                [[ $target == direct ]] || stop_bg "$TARGET_PID"
            fi
        done
    done
    CALLGRIND_RUN=0
    stop_bg "$BACKEND_PID"
    for target in $BENCH_TARGETS; do
        why=$(target_missing "$target")
        if [[ -n $why ]]; then
            report "| $target | — | — | — | — | not run: $why |"
            continue
        fi
        summarize "$key.$target"
        report "| $target | ${R_RPS[$key.$target]} | $(fmt_ms "${R_P50[$key.$target]}") | $(fmt_ms "${R_P99[$key.$target]}") | ${R_CPU[$key.$target]} | ${R_ERR[$key.$target]} |"
    done
    if ((BENCH_ROUNDS > 1)); then
        report ""
        report "(medians of $BENCH_ROUNDS rounds)"
    fi
    report ""
    if [[ $BENCH_CALLGRIND == 1 ]]; then
        report "(under callgrind: the req/s and CPU above are valgrind's, not results)"
        report ""
        for target in $BENCH_TARGETS; do
            [[ -n ${CG_REPORT[$key.$target]:-} ]] && report "${CG_REPORT[$key.$target]}"
        done
    fi
    local peer
    local v
    for v in "${VARIANTS[@]}"; do
        [[ -n ${R_RPS[$key.toolgate]:-} && -n ${R_RPS[$key.$v]:-} ]] || continue
        report "- $v, ${VARIANT_NOTE[$v]}: throughput $(ratio "${R_RPS[$key.$v]}" "${R_RPS[$key.toolgate]}")x of toolgate's," \
            "CPU per request $(ratio "${R_CPU[$key.$v]}" "${R_CPU[$key.toolgate]}")x"
    done
    if [[ -n ${R_RPS[$key.toolgate]:-} ]]; then
        for peer in nginx h2o direct; do
            [[ -n ${R_RPS[$key.$peer]:-} ]] || continue
            report "- toolgate/$peer: throughput $(ratio "${R_RPS[$key.toolgate]}" "${R_RPS[$key.$peer]}")x," \
                "p50 $(ratio "${R_P50[$key.toolgate]}" "${R_P50[$key.$peer]}")x," \
                "p99 $(ratio "${R_P99[$key.toolgate]}" "${R_P99[$key.$peer]}")x," \
                "CPU per request $(ratio "${R_CPU[$key.toolgate]}" "${R_CPU[$key.$peer]}")x"
        done
    fi
}

section_passthrough() {
    passthrough_run json pt "Pass-through: tools/call get_patient, JSON answers"
}

# tools/list through a route with one backend vs one that federates two: the federated list
# is answered by toolgate from one backend page per request (names prefixed, cursor rewritten).
section_federation() {
    local target name
    start_backend json
    local first=$BACKEND_PID
    BACKEND2_PORT=""
    pick_port BACKEND2_PORT
    start_bg BACKEND2_PID "$TMP/backend2.log" "$BACKEND" --listen "127.0.0.1:$BACKEND2_PORT" \
        --mode json --workers "$BENCH_BACKEND_WORKERS" --quiet
    wait_port "$BACKEND2_PORT" "$BACKEND2_PID" "$TMP/backend2.log"
    report ""
    report "### tools/list: one backend vs two federated behind one route"
    report ""
    report "| target | req/s | p50 ms | p99 ms | server CPU µs/req | errors |"
    report "|---|---:|---:|---:|---:|---|"
    export BENCH_BODY='{"jsonrpc":"2.0","id":7,"method":"tools/list"}'
    for target in toolgate toolgate_federated; do
        log "fed: $target"
        "start_$target" json
        SESSION_CHECK_BODY=""
        [[ $target == toolgate_federated ]] && SESSION_CHECK_BODY=${TOOLS_CALL_BODY/get_patient/ehr.get_patient}
        mcp_session "$TARGET_URL"
        run_wrk "fed.$target" "$TARGET_URL" "$TARGET_PID"
        stop_bg "$TARGET_PID"
        summarize "fed.$target"
        report "| $target | ${R_RPS[fed.$target]} | $(fmt_ms "${R_P50[fed.$target]}") | $(fmt_ms "${R_P99[fed.$target]}") | ${R_CPU[fed.$target]} | ${R_ERR[fed.$target]} |"
    done
    unset BENCH_BODY
    SESSION_CHECK_BODY=""
    stop_bg "$BACKEND2_PID"
    stop_bg "$first"
    report ""
    report "- federated/single tools/list: throughput $(ratio "${R_RPS[fed.toolgate_federated]}" "${R_RPS[fed.toolgate]}")x, p50 $(ratio "${R_P50[fed.toolgate_federated]}" "${R_P50[fed.toolgate]}")x, p99 $(ratio "${R_P99[fed.toolgate_federated]}" "${R_P99[fed.toolgate]}")x"
}

section_passthrough_sse() {
    passthrough_run sse sse "Pass-through: tools/call get_patient, SSE answers"
}

# ---------------------------------------------------------------------------------------------
# idle_rss: memory with BENCH_IDLE_CONNECTIONS idle keep-alive connections.

IDLECONN=""
build_idleconn() {
    IDLECONN=$BUILD_DIR/bench/idleconn
    if [[ ! -x $IDLECONN || $BENCH_DIR/idleconn.c -nt $IDLECONN ]]; then
        mkdir -p "$BUILD_DIR/bench"
        ${CC:-cc} -std=c11 -O2 -Wall -Wextra -Werror -o "$IDLECONN" "$BENCH_DIR/idleconn.c" ||
            die "cannot build bench/idleconn.c"
    fi
}

declare -A RSS_BASE RSS_NOW RSS_HWM RSS_OK RSS_CLOSED
idle_rss_one() {
    local target=$1 port host_path out=$TMP/idle-$1.out client i line
    "start_$target" json
    mcp_session "$TARGET_URL"
    # Baseline after the session's few requests: the server is warm but holds no load.
    RSS_BASE[$target]=$(proc_tree_kib "$TARGET_PID" VmRSS)
    port=${TARGET_URL#http://127.0.0.1:}
    port=${port%%/*}
    host_path=/${TARGET_URL#http://127.0.0.1:*/}
    {
        printf 'POST %s HTTP/1.1\r\nHost: 127.0.0.1:%s\r\n' "$host_path" "$port"
        printf 'Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n'
        printf 'Mcp-Session-Id: %s\r\nMCP-Protocol-Version: %s\r\n' "$SESSION" "$MCP_PROTOCOL"
        [[ -n $BENCH_AUTHORIZATION ]] && printf 'Authorization: %s\r\n' "$BENCH_AUTHORIZATION"
        printf 'Content-Length: %d\r\n\r\n%s' "${#TOOLS_CALL_BODY}" "$TOOLS_CALL_BODY"
    } >"$TMP/idle-request.http"
    start_bg client "$out" "$IDLECONN" 127.0.0.1 "$port" "$BENCH_IDLE_CONNECTIONS" \
        "$TMP/idle-request.http" 120
    for ((i = 0; i < 450; i++)); do
        grep -q '^ready ' "$out" 2>/dev/null && break
        kill -0 "$client" 2>/dev/null || break
        sleep 0.1
    done
    line=$(grep '^ready ' "$out") || die "idleconn against $target did not get ready: $(tail -3 "$out")"
    sleep 2 # idle: let any deferred frees and timers run before reading memory
    RSS_NOW[$target]=$(proc_tree_kib "$TARGET_PID" VmRSS)
    RSS_HWM[$target]=$(proc_tree_kib "$TARGET_PID" VmHWM)
    RSS_OK[$target]=$(sed -n 's/.* ok=\([0-9]*\).*/\1/p' <<<"$line")
    stop_bg "$client"
    RSS_CLOSED[$target]=$(sed -n 's/.* closed_by_server=\([0-9]*\).*/\1/p' "$out")
    stop_bg "$TARGET_PID"
    log "idle_rss $target: ${RSS_OK[$target]} connections answered, RSS ${RSS_NOW[$target]} KiB, peak ${RSS_HWM[$target]} KiB"
}

section_idle_rss() {
    local target why n=$BENCH_IDLE_CONNECTIONS
    build_idleconn
    start_backend json
    report ""
    report "### Memory with $n idle keep-alive connections (one tools/call answered on each)"
    report ""
    report "| server | answered | closed while idle | RSS before | RSS idle | peak RSS (VmHWM) | per connection |"
    report "|---|---:|---:|---:|---:|---:|---:|"
    for target in $BENCH_RSS_TARGETS; do
        why=$(target_missing "$target")
        if [[ -n $why || $target == direct ]]; then
            report "| $target | — | — | — | — | — | not run: ${why:-the backend is not a proxy} |"
            continue
        fi
        idle_rss_one "$target"
        report "| $target | ${RSS_OK[$target]}/$n | ${RSS_CLOSED[$target]:-?} |" \
            "$(awk -v k="${RSS_BASE[$target]}" 'BEGIN { printf "%.1f MiB", k / 1024 }') |" \
            "$(awk -v k="${RSS_NOW[$target]}" 'BEGIN { printf "%.1f MiB", k / 1024 }') |" \
            "$(awk -v k="${RSS_HWM[$target]}" 'BEGIN { printf "%.1f MiB", k / 1024 }') |" \
            "$(awk -v a="${RSS_NOW[$target]}" -v b="${RSS_BASE[$target]}" -v n="${RSS_OK[$target]}" \
                'BEGIN { if (n > 0) printf "%.1f KiB", (a - b) / n; else print "n/a" }') |"
    done
    stop_bg "$BACKEND_PID"
    [[ $BENCH_RSS_TARGETS == *nginx* ]] && report "" &&
        report "(nginx: master and worker processes added together.)"
    return 0
}

# ---------------------------------------------------------------------------------------------
# idle_sessions: toolgate's memory with BENCH_IDLE_SESSIONS idle keep-alive connections, each
# with an MCP session of its own (initialize and notifications/initialized sent on it, the
# session kept). server.limits raises the connection bound and the idle timeout over what the
# run needs, so neither closes a connection before memory is read.

BENCH_IDLE_SESSIONS=${BENCH_IDLE_SESSIONS:-10000}
IDLE_SESSIONS_TARGET_MIB=64

section_idle_sessions() {
    local n=$BENCH_IDLE_SESSIONS out=$TMP/idle-sessions.out client i line port init notify
    local base now hwm ok closed
    build_idleconn
    start_backend json
    # The bench's configuration with room for the connections (one more: the session check).
    sed 's/^server:$/server:\n  limits: {max_connections: '$((n + 100))', idle_timeout: 10m}/' \
        "$BENCH_TOOLGATE_CONFIG" >"$TMP/toolgate-idle-sessions.yaml.in"
    BENCH_TOOLGATE_CONFIG=$TMP/toolgate-idle-sessions.yaml.in start_toolgate json
    mcp_session "$TARGET_URL"
    base=$(proc_tree_kib "$TARGET_PID" VmRSS)
    port=${TARGET_URL#http://127.0.0.1:}
    port=${port%%/*}
    init='{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"'$MCP_PROTOCOL'","capabilities":{},"clientInfo":{"name":"toolgate-bench-idle","version":"1"}}}'
    notify='{"jsonrpc":"2.0","method":"notifications/initialized"}'
    {
        printf 'POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:%s\r\n' "$port"
        printf 'Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n'
        [[ -n $BENCH_AUTHORIZATION ]] && printf 'Authorization: %s\r\n' "$BENCH_AUTHORIZATION"
        printf 'Content-Length: %d\r\n\r\n%s' "${#init}" "$init"
    } >"$TMP/idle-init.http"
    {
        printf 'POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:%s\r\n' "$port"
        printf 'Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n'
        printf 'Mcp-Session-Id: @SESSION@\r\nMCP-Protocol-Version: %s\r\n' "$MCP_PROTOCOL"
        [[ -n $BENCH_AUTHORIZATION ]] && printf 'Authorization: %s\r\n' "$BENCH_AUTHORIZATION"
        printf 'Content-Length: %d\r\n\r\n%s' "${#notify}" "$notify"
    } >"$TMP/idle-notify.http"
    start_bg client "$out" "$IDLECONN" 127.0.0.1 "$port" "$n" "$TMP/idle-init.http" 300 \
        "$TMP/idle-notify.http"
    for ((i = 0; i < 3000; i++)); do
        grep -q '^ready ' "$out" 2>/dev/null && break
        kill -0 "$client" 2>/dev/null || break
        sleep 0.1
    done
    line=$(grep '^ready ' "$out") || die "idleconn (sessions) did not get ready: $(tail -3 "$out")"
    sleep 2 # idle: let any deferred frees and timers run before reading memory
    now=$(proc_tree_kib "$TARGET_PID" VmRSS)
    hwm=$(proc_tree_kib "$TARGET_PID" VmHWM)
    ok=$(sed -n 's/.* ok=\([0-9]*\).*/\1/p' <<<"$line")
    stop_bg "$client"
    closed=$(sed -n 's/.* closed_by_server=\([0-9]*\).*/\1/p' "$out")
    stop_bg "$TARGET_PID"
    stop_bg "$BACKEND_PID"
    log "idle_sessions: $ok connections with sessions, RSS $now KiB, peak $hwm KiB"
    IDLE_SESSIONS_HWM=$hwm IDLE_SESSIONS_OK=$ok
    report ""
    report "### toolgate with $n idle keep-alive connections, each with its own MCP session"
    report ""
    report "(initialize and notifications/initialized on each connection; the sessions kept)"
    report ""
    report "| server | sessions opened | closed while idle | RSS before | RSS idle | peak RSS (VmHWM) | per connection + session |"
    report "|---|---:|---:|---:|---:|---:|---:|"
    report "| toolgate | $ok/$n | ${closed:-?} |" \
        "$(awk -v k="$base" 'BEGIN { printf "%.1f MiB", k / 1024 }') |" \
        "$(awk -v k="$now" 'BEGIN { printf "%.1f MiB", k / 1024 }') |" \
        "$(awk -v k="$hwm" 'BEGIN { printf "%.1f MiB", k / 1024 }') |" \
        "$(awk -v a="$now" -v b="$base" -v n="$ok" 'BEGIN { if (n > 0) printf "%.1f KiB", (a - b) / n; else print "n/a" }') |"
    report ""
    report "- target: peak RSS <= $IDLE_SESSIONS_TARGET_MIB MiB with $n idle connections with sessions:" \
        "$(awk -v k="$hwm" 'BEGIN { printf "%.1f", k / 1024 }') MiB — $(awk -v k="$hwm" -v t="$IDLE_SESSIONS_TARGET_MIB" -v ok="$ok" -v n="$n" 'BEGIN { print (k / 1024 <= t && ok == n) ? "met" : "not met" }')"
    return 0
}

# ---------------------------------------------------------------------------------------------
# cold_start: exec to ready (/readyz 200 on the admin listener) with BENCH_COLD_RULES policy
# rules and every built-in safety detector, BENCH_COLD_RUNS times (the table shows each run
# and the median). Readiness is polled with curl as fast as it runs (a few ms a poll: the
# resolution of the numbers). Each run starts with a fresh working directory (no pins, no
# audit store from the run before).

BENCH_COLD_RULES=${BENCH_COLD_RULES:-1000}
BENCH_COLD_RUNS=${BENCH_COLD_RUNS:-5}
COLD_START_TARGET_MS=300

# cold_rules N: N policy rules in the mix of `toolgate bench policy` (exact tool names with
# roles and scopes, every tenth a forbid on an argument range, every third with a regex
# condition, min(N/100, 100) glob rules), then the permit the benchmark's calls need.
cold_rules() {
    awk -v n="$1" 'BEGIN {
        globs = int(n / 100); if (globs > 100) globs = 100
        for (i = 0; i < n; i++) {
            if (i < globs)
                printf "    - {id: g%d, effect: permit, tools: [\"ns%d.*\"], roles_any: [role%d]}\n", i, i, i % 20
            else if (i % 10 == 9)
                printf "    - {id: r%d, effect: forbid, tools: [t%d], when: [{arg: /amount, range: {min: 10000}}]}\n", i, int(i / 2)
            else if (i % 3 == 1)
                printf "    - {id: r%d, effect: permit, tools: [t%d], roles_any: [role%d, admin], scopes_all: [s%d], when: [{arg: /id, matches: \"P[0-9]+\"}]}\n", i, int(i / 2), i % 20, i % 5
            else
                printf "    - {id: r%d, effect: permit, tools: [t%d], roles_any: [role%d], scopes_any: [s%d, s%d]}\n", i, int(i / 2), i % 20, i % 5, (i + 1) % 5
        }
        print "    - {id: bench, effect: permit, tools: [\"*\"], roles_any: [bench]}"
    }'
}

# cold_start_run DIR CACHE: one start with a fresh working directory; appends to COLD_WALL,
# COLD_LISTEN and COLD_CPU and reports the row. CACHE: safety.compile_cache, or "" (none).
COLD_WALL=() COLD_LISTEN=() COLD_CPU=()
cold_start_run() {
    local dir=$1 cache=$2 port admin cold_pid t0 t1 ms="" code="" i ticks safety='{}'
    mkdir -p "$dir"
    pick_port port
    pick_port admin
    [[ -n $cache ]] && safety="{compile_cache: \"$cache\"}"
    {
        echo "server: {listen: [\"127.0.0.1:$port\"], public_url: \"http://toolgate.bench.invalid\", workers: $BENCH_WORKERS, log_level: warn}"
        echo "admin: {listen: \"127.0.0.1:$admin\"}"
        echo "routes: [{name: ehr, path: /mcp, backends: [{name: ehr, url: \"http://127.0.0.1:$BACKEND_PORT/mcp\"}], inject: {mode: jwt, audience: ehr-backend}}]"
        echo "identity: ${IDENTITY_ON//@KEYS@/$TMP/keys}"
        echo "safety: $safety"
        echo "integrity: {store: \"sqlite:$dir/pins.db\"}"
        echo "egress: {allow: [\"127.0.0.1/32\"], signing_key: \"$TMP/keys/egress/private.pem\"}"
        echo "audit: {store: \"sqlite:$dir/audit.db\"}"
        echo "policy:"
        echo "  rules:"
        cold_rules "$BENCH_COLD_RULES"
    } >"$dir/toolgate.yaml"
    t0=$(date +%s%N)
    start_bg cold_pid "$dir/toolgate.log" "$TOOLGATE" serve --config "$dir/toolgate.yaml"
    for ((i = 0; i < 2000; i++)); do
        if [[ -z $ms ]] && port_open "$port"; then
            ms=$((($(date +%s%N) - t0) / 1000000))
        fi
        code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://127.0.0.1:$admin/readyz" 2>/dev/null) || true
        if [[ $code == 200 ]]; then
            [[ -n $ms ]] || ms=$((($(date +%s%N) - t0) / 1000000))
            break
        fi
        kill -0 "$cold_pid" 2>/dev/null || die "toolgate exited during cold start: $(tail -3 "$dir/toolgate.log")"
    done
    t1=$(date +%s%N)
    ticks=$(proc_tree_ticks "$cold_pid")
    [[ $code == 200 ]] || die "toolgate was not ready after $i polls: $(tail -3 "$dir/toolgate.log")"
    stop_bg "$cold_pid"
    COLD_WALL+=($(((t1 - t0) / 1000000)))
    COLD_LISTEN+=("$ms")
    COLD_CPU+=($((ticks * 1000 / CLK_TCK)))
}

section_cold_start() {
    local n=$BENCH_COLD_RULES runs=$BENCH_COLD_RUNS r mode cache
    start_backend json
    report ""
    report "### Cold start: exec to /readyz 200 with $n policy rules and every safety detector"
    report ""
    report "| safety patterns | run | exec to listening (ms) | exec to ready (ms) | CPU to ready (ms) |"
    report "|---|---:|---:|---:|---:|"
    for mode in compiled cached; do
        COLD_WALL=() COLD_LISTEN=() COLD_CPU=()
        cache=""
        if [[ $mode == cached ]]; then
            # safety.compile_cache, filled by one start before the measured ones.
            cache=$TMP/cold-cache
            mkdir -p "$cache"
            chmod 700 "$cache"
            cold_start_run "$TMP/cold-warm" "$cache"
            COLD_WALL=() COLD_LISTEN=() COLD_CPU=()
        fi
        for ((r = 1; r <= runs; r++)); do
            cold_start_run "$TMP/cold-$mode-$r" "$cache"
            report "| $mode | $r | ${COLD_LISTEN[-1]} | ${COLD_WALL[-1]} | ${COLD_CPU[-1]} |"
        done
        report "| $mode | median | $(median "${COLD_LISTEN[*]}") | **$(median "${COLD_WALL[*]}")** | **$(median "${COLD_CPU[*]}")** |"
        log "cold_start ($mode): median $(median "${COLD_WALL[*]}") ms to ready, $(median "${COLD_CPU[*]}") ms CPU"
        if [[ $mode == compiled ]]; then
            COLD_START_MS=$(median "${COLD_WALL[*]}") COLD_START_CPU_MS=$(median "${COLD_CPU[*]}")
        else
            COLD_CACHED_MS=$(median "${COLD_WALL[*]}") COLD_CACHED_CPU_MS=$(median "${COLD_CPU[*]}")
        fi
    done
    stop_bg "$BACKEND_PID"
    report ""
    report "- target: exec to ready <= $COLD_START_TARGET_MS ms: compiled $COLD_START_MS ms wall, $COLD_START_CPU_MS ms CPU;" \
        "cached $COLD_CACHED_MS ms wall, $COLD_CACHED_CPU_MS ms CPU — wall $(awk -v v="$COLD_CACHED_MS" -v t="$COLD_START_TARGET_MS" 'BEGIN { print (v <= t) ? "met" : "not met" }')," \
        "CPU $(awk -v v="$COLD_CACHED_CPU_MS" -v t="$COLD_START_TARGET_MS" 'BEGIN { print (v <= t) ? "met" : "not met" }') (cached)"
    report ""
    report "(compiled: every start compiles the pattern database; cached: \`safety.compile_cache\`"
    report "holds it from an earlier start. CPU: user + system time of the process when /readyz first"
    report "answered 200, in clock ticks of $((1000 / CLK_TCK)) ms; on a loaded machine the wall clock is"
    report "mostly waiting for a CPU. Load average at the end: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) CPUs.)"
    return 0
}

# ---------------------------------------------------------------------------------------------
# micro: layer micro-benchmarks. Each is one line here:
#
#     micro_bench NAME COMMAND [ARGS...]
#
# The command runs with a timeout (BENCH_MICRO_TIMEOUT s), prints its result on stdout (one
# line or a small table) and exits 0; its output goes into the report as it is. A command that
# fails or does not exist yet is reported as "not available", without failing the run.

micro_bench() {
    local name=$1 rc=0 pid
    shift
    log "micro: $name"
    timeout "$BENCH_MICRO_TIMEOUT" "$@" >"$TMP/micro-$name.out" 2>"$TMP/micro-$name.err" &
    pid=$!
    PIDS+=("$pid")
    wait "$pid" || rc=$?
    forget_pid "$pid"
    if ((rc == 0)) && [[ -s $TMP/micro-$name.out ]]; then
        report ""
        report "#### $name"
        report ""
        report '```'
        head -c 8192 "$TMP/micro-$name.out" >>"$REPORT"
        report '```'
    else
        report ""
        report "#### $name"
        report ""
        report "not available in this build (\`${*##*/}\` exit $rc: $(head -n 1 "$TMP/micro-$name.err" | head -c 200))"
    fi
}

section_micro() {
    report ""
    report "### Layer micro-benchmarks"
    micro_bench policy "$TOOLGATE" bench policy
    micro_bench identity "$TOOLGATE" bench identity
    mkdir -p "$TMP/audit-bench"
    micro_bench audit "$TOOLGATE" bench audit --dir "$TMP/audit-bench"
    micro_bench limits "$TOOLGATE" bench limits
    micro_bench routing "$TOOLGATE" bench routing
    micro_bench safety "$TOOLGATE" bench safety
    micro_bench telemetry "$TOOLGATE" bench telemetry
}

# ---------------------------------------------------------------------------------------------
# Fixed-rate (open-loop) load: bench/loadgen.c sends every request at its due time, whatever
# the answers before it did, and measures each latency from that due time. The rate is
# BENCH_OPENLOOP_LOAD of toolgate's saturation throughput (the full pipeline, closed-loop wrk),
# so every target is loaded with the same requests per second.

LOADGEN=""
build_loadgen() {
    LOADGEN=$BUILD_DIR/bench/loadgen
    if [[ ! -x $LOADGEN || $BENCH_DIR/loadgen.c -nt $LOADGEN ]]; then
        mkdir -p "$BUILD_DIR/bench"
        ${CC:-cc} -std=c11 -O2 -Wall -Wextra -Werror -o "$LOADGEN" "$BENCH_DIR/loadgen.c" ||
            die "cannot build bench/loadgen.c"
    fi
}

# CPU ticks of toolgate's audit writer thread (named tg-audit) so far.
proc_audit_ticks() {
    local total=0 t d
    for d in /proc/"$1"/task/*; do
        [[ $(cat "$d/comm" 2>/dev/null) == tg-audit ]] || continue
        t=$(sed 's/.*) //' "$d/stat" 2>/dev/null | awk '{print $12 + $13}') || t=0
        total=$((total + ${t:-0}))
    done
    echo "$total"
}

# run_loadgen NAME URL PID RATE: BENCH_WARMUP s unmeasured, then BENCH_DURATION s measured, at
# RATE requests/s on BENCH_CONNECTIONS keep-alive connections; appends this round's numbers to
# LO_<field>[NAME]; summarize_loadgen NAME then sets O_<field>[NAME] to the medians.
declare -A O_RATE O_RPS O_P50 O_P99 O_P999 O_MAX O_CPU O_AUDIT O_LAG O_ERR
declare -A LO_RPS LO_P50 LO_P99 LO_P999 LO_MAX LO_CPU LO_AUDIT LO_LAG LO_STATUS LO_SOCK LO_UNSENT
run_loadgen() {
    local name=$1 url=$2 pid=$3 rate=$4 out=$TMP/loadgen-$1.out t0 t1 a0 a1 line all
    local args=(-u "$url" -r "$rate" -c "$BENCH_CONNECTIONS" -d "$BENCH_DURATION" -w "$BENCH_WARMUP"
        -t 10 -H "Accept: application/json, text/event-stream" -H "Mcp-Session-Id: $SESSION"
        -H "MCP-Protocol-Version: $MCP_PROTOCOL" -b "${BENCH_BODY:-$TOOLS_CALL_BODY}")
    [[ -n $BENCH_AUTHORIZATION ]] && args+=(-H "Authorization: $BENCH_AUTHORIZATION")
    t0=$(proc_tree_ticks "$pid")
    a0=$(proc_audit_ticks "$pid")
    run_waiting "$out" timeout $((BENCH_WARMUP + BENCH_DURATION + 60)) "$LOADGEN" "${args[@]}" ||
        die "loadgen against $name failed: $(tail -3 "$out")"
    t1=$(proc_tree_ticks "$pid")
    a1=$(proc_audit_ticks "$pid")
    line=$(grep '^BENCH_RESULT ' "$out") || die "loadgen against $name printed no result: $(tail -3 "$out")"
    all=$(wrk_field "$line" sent_all)
    local rps p50 p99 p999 cpu e_status e_sock e_unsent
    O_RATE[$name]=$rate
    rps=$(wrk_field "$line" achieved_rps)
    p50=$(wrk_field "$line" p50_us)
    p99=$(wrk_field "$line" p99_us)
    p999=$(wrk_field "$line" p999_us)
    cpu=$(awk -v t=$((t1 - t0)) -v hz="$CLK_TCK" -v n="$all" \
        'BEGIN { if (n > 0) printf "%.1f", t / hz * 1e6 / n; else print 0 }')
    LO_RPS[$name]+=" $rps"
    LO_P50[$name]+=" $p50"
    LO_P99[$name]+=" $p99"
    LO_P999[$name]+=" $p999"
    LO_MAX[$name]+=" $(wrk_field "$line" max_us)"
    LO_LAG[$name]+=" $(wrk_field "$line" send_lag_p99_us)"
    LO_CPU[$name]+=" $cpu"
    LO_AUDIT[$name]+=" $(awk -v t=$((a1 - a0)) -v hz="$CLK_TCK" -v n="$all" \
        'BEGIN { if (n > 0) printf "%.1f", t / hz * 1e6 / n; else print 0 }')"
    e_status=$(wrk_field "$line" errors_status)
    e_sock=$(($(wrk_field "$line" errors_connect) + $(wrk_field "$line" errors_read) + $(wrk_field "$line" errors_timeout)))
    e_unsent=$(wrk_field "$line" errors_unsent)
    LO_STATUS[$name]=$((${LO_STATUS[$name]:-0} + e_status))
    LO_SOCK[$name]=$((${LO_SOCK[$name]:-0} + e_sock))
    LO_UNSENT[$name]=$((${LO_UNSENT[$name]:-0} + e_unsent))
    log "$name: $rps of $rate req/s answered, p50 $(fmt_ms "$p50") ms, p99 $(fmt_ms "$p99") ms, p99.9 $(fmt_ms "$p999") ms, CPU $cpu us/req, errors $e_status non-2xx, $e_sock socket, $e_unsent never sent"
}

# The medians over the rounds of run_loadgen NAME (errors added up), into O_<field>[NAME].
summarize_loadgen() {
    local name=$1
    O_RPS[$name]=$(median "${LO_RPS[$name]}")
    O_P50[$name]=$(median "${LO_P50[$name]}")
    O_P99[$name]=$(median "${LO_P99[$name]}")
    O_P999[$name]=$(median "${LO_P999[$name]}")
    O_MAX[$name]=$(median "${LO_MAX[$name]}")
    O_LAG[$name]=$(median "${LO_LAG[$name]}")
    O_CPU[$name]=$(median "${LO_CPU[$name]}")
    O_AUDIT[$name]=$(median "${LO_AUDIT[$name]}")
    O_ERR[$name]=0
    if ((LO_STATUS[$name] + LO_SOCK[$name] + LO_UNSENT[$name] > 0)); then
        O_ERR[$name]="${LO_STATUS[$name]} non-2xx, ${LO_SOCK[$name]} socket/timeout, ${LO_UNSENT[$name]} never sent"
    fi
}

# ratio3 A B: A / B with three significant digits (latency ratios span orders of magnitude).
ratio3() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.3g", a / b; else print "n/a" }'; }

openloop_header() {
    report "| target | req/s offered | answered/s | p50 ms | p99 ms | p99.9 ms | max ms | server CPU µs/req | send lag p99 ms | errors |"
    report "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"
}

openloop_row() { # openloop_row KEY LABEL
    report "| $2 | ${O_RATE[$1]} | ${O_RPS[$1]} | $(fmt_ms "${O_P50[$1]}") | $(fmt_ms "${O_P99[$1]}") |" \
        "$(fmt_ms "${O_P999[$1]}") | $(fmt_ms "${O_MAX[$1]}") | ${O_CPU[$1]} | $(fmt_ms "${O_LAG[$1]}") | ${O_ERR[$1]} |"
}

# The fixed rate of this run (set once): BENCH_OPENLOOP_RATE, or BENCH_OPENLOOP_LOAD times
# toolgate's saturation throughput, taken from the passthrough section when it ran, else
# measured here with wrk. Needs the JSON backend running.
OPENLOOP_RATE="" OPENLOOP_SAT="" OPENLOOP_FROM=""
openloop_rate() {
    [[ -z $OPENLOOP_RATE ]] || return 0
    if [[ -n $BENCH_OPENLOOP_RATE ]]; then
        OPENLOOP_RATE=$BENCH_OPENLOOP_RATE
        OPENLOOP_FROM="set by BENCH_OPENLOOP_RATE"
        return 0
    fi
    OPENLOOP_SAT=${R_RPS[pt.toolgate]:-}
    OPENLOOP_FROM="the passthrough section's wrk run"
    if [[ -z $OPENLOOP_SAT ]]; then
        log "openloop: toolgate's saturation throughput (wrk)"
        start_toolgate json
        mcp_session "$TARGET_URL"
        run_wrk "sat.toolgate" "$TARGET_URL" "$TARGET_PID"
        stop_bg "$TARGET_PID"
        summarize sat.toolgate
        OPENLOOP_SAT=${R_RPS[sat.toolgate]}
        OPENLOOP_FROM="wrk with $BENCH_CONNECTIONS connections"
    fi
    OPENLOOP_RATE=$(awk -v s="$OPENLOOP_SAT" -v f="$BENCH_OPENLOOP_LOAD" \
        'BEGIN { r = int(s * f); print (r < 1) ? 1 : r }')
    OPENLOOP_FROM="$BENCH_OPENLOOP_LOAD x toolgate's saturation, $OPENLOOP_SAT req/s from $OPENLOOP_FROM"
}

# openloop_ratios KEY A B...: A's latency percentiles as ratios of each of B's.
openloop_ratios() {
    local key=$1 a=$2 b
    shift 2
    [[ -n ${O_P99[$key.$a]:-} ]] || return 0
    for b in "$@"; do
        [[ -n ${O_P99[$key.$b]:-} ]] || continue
        report "- $a/$b at the same rate: p50 $(ratio3 "${O_P50[$key.$a]}" "${O_P50[$key.$b]}")x," \
            "p99 $(ratio3 "${O_P99[$key.$a]}" "${O_P99[$key.$b]}")x," \
            "p99.9 $(ratio3 "${O_P999[$key.$a]}" "${O_P999[$key.$b]}")x," \
            "CPU per request $(ratio3 "${O_CPU[$key.$a]}" "${O_CPU[$key.$b]}")x"
    done
}

section_openloop() {
    local target why
    build_loadgen
    start_backend json
    openloop_rate
    report ""
    report "### Fixed rate (open loop): tools/call get_patient at $OPENLOOP_RATE req/s, JSON answers"
    report ""
    report "Rate: $OPENLOOP_FROM. $BENCH_CONNECTIONS connections, ${BENCH_DURATION} s measured after ${BENCH_WARMUP} s; latency from each request's due time."
    report ""
    openloop_header
    local round
    for ((round = 1; round <= BENCH_ROUNDS; round++)); do
        for target in $BENCH_OPENLOOP_TARGETS; do
            [[ -z $(target_missing "$target") ]] || continue
            log "openloop: $target at $OPENLOOP_RATE req/s (round $round of $BENCH_ROUNDS)"
            "start_$target" json
            mcp_session "$TARGET_URL"
            local t0
            t0=$(date +%s)
            run_loadgen "ol.$target" "$TARGET_URL" "$TARGET_PID" "$OPENLOOP_RATE"
            [[ $target == direct ]] || stop_bg "$TARGET_PID"
            [[ $target != toolgate* ]] || openloop_stages "$target" $((t0 + BENCH_WARMUP)) "$(date +%s)"
        done
    done
    stop_bg "$BACKEND_PID"
    for target in $BENCH_OPENLOOP_TARGETS; do
        why=$(target_missing "$target")
        if [[ -n $why ]]; then
            report "| $target | — | — | — | — | — | — | — | — | not run: $why |"
            continue
        fi
        summarize_loadgen "ol.$target"
        openloop_row "ol.$target" "$target"
    done
    report ""
    if ((BENCH_ROUNDS > 1)); then
        report "(medians of $BENCH_ROUNDS interleaved rounds; errors added up)"
        report ""
    fi
    openloop_ratios ol toolgate nginx h2o direct
    openloop_stages_report
}

# openloop_stages TARGET FROM TO: the latency of each stage of the calls toolgate TARGET answered
# between the epoch seconds FROM and TO (the measured part of its last round), from the
# latency_ns of its own completion records (bench/stages.mjs), into OS_LINES[TARGET]. The wait
# for a record's commit comes after its completion record is made, so it is in no stage: the
# gap between the load generator's latency and "total" is that wait and the client's side.
declare -A OS_LINES=()
openloop_stages() {
    local target=$1 from=$2 to=$3 store=$TMP/$1/audit.db out
    [[ -f $store ]] && command -v node >/dev/null || return 0
    out=$("$TOOLGATE" audit export "sqlite:$store" --format jsonl \
        --since "$(date -u -d "@$from" +%Y-%m-%dT%H:%M:%SZ)" \
        --until "$(date -u -d "@$to" +%Y-%m-%dT%H:%M:%SZ)" 2>/dev/null |
        node "$BENCH_DIR/stages.mjs") || {
        log "openloop: no stage latencies for $target (the export or bench/stages.mjs failed)"
        return 0
    }
    OS_LINES[$target]=$out
}

openloop_stages_report() {
    local target line key
    [[ ${#OS_LINES[@]} -gt 0 ]] || return 0
    report ""
    report "Where a toolgate call's time went at this rate (its completion records' \`latency_ns\`, the measured part of the last round; the wait for the record's commit is after them):"
    report ""
    report "| target | stage | calls | p50 ms | p99 ms | p99.9 ms | max ms |"
    report "|---|---|---:|---:|---:|---:|---:|"
    for target in $BENCH_OPENLOOP_TARGETS; do
        [[ -n ${OS_LINES[$target]:-} ]] || continue
        while read -r line; do
            key=$(sed -n 's/.*key=\([^ ]*\).*/\1/p' <<<"$line")
            report "| $target | $key | $(wrk_field "$line" n) | $(fmt_ms "$(wrk_field "$line" p50_us)") |" \
                "$(fmt_ms "$(wrk_field "$line" p99_us)") | $(fmt_ms "$(wrk_field "$line" p999_us)") | $(fmt_ms "$(wrk_field "$line" max_us)") |"
        done <<<"${OS_LINES[$target]}"
    done
}

# ---------------------------------------------------------------------------------------------
# layers: the whole pipeline (all six layers configured, limits included) and the same with one
# layer switched off in turn, each at the fixed rate of this run; the CPU a request costs with
# and without the layer, in the same run. Policy and audit cannot be switched off: without a
# policy every call is denied, and the audit log has no off switch (closed world). For audit
# the writer thread's own CPU is shown instead, and durability: queued; for policy the micro
# section's in-process decision cost.

LAYER_OFF=(toolgate_noid toolgate_nosafety toolgate_nolimits toolgate_noinject toolgate_queued)
declare -A LAYER_NAME=(
    [toolgate_noid]="identity"
    [toolgate_nosafety]="safety"
    [toolgate_nolimits]="limits"
    [toolgate_noinject]="routing injection"
    [toolgate_queued]="audit: answers not held for their record"
)

section_layers() {
    local target why full=ly.toolgate
    build_loadgen
    start_backend json
    openloop_rate
    report ""
    report "### Cost of each layer: the whole pipeline with one layer off, at $OPENLOOP_RATE req/s"
    report ""
    report "Every toolgate here has identity, safety, policy, limits (rate and budget, memory store), routing with an injected JWT and audit (commit) configured, and one of them switched off per row. Rate: $OPENLOOP_FROM."
    report ""
    report "| target | switched off | server CPU µs/req | layer's cost µs/req | audit writer thread µs/req | p50 ms | p99 ms | p99.9 ms | errors |"
    report "|---|---|---:|---:|---:|---:|---:|---:|---|"
    TOOLGATE_ALL_LAYERS=1
    local round
    for ((round = 1; round <= BENCH_ROUNDS; round++)); do
        for target in toolgate "${LAYER_OFF[@]}"; do
            log "layers: $target at $OPENLOOP_RATE req/s (round $round of $BENCH_ROUNDS)"
            "start_$target" json
            mcp_session "$TARGET_URL"
            run_loadgen "ly.$target" "$TARGET_URL" "$TARGET_PID" "$OPENLOOP_RATE"
            stop_bg "$TARGET_PID"
        done
    done
    TOOLGATE_ALL_LAYERS=0
    stop_bg "$BACKEND_PID"
    for target in toolgate "${LAYER_OFF[@]}"; do
        summarize_loadgen "ly.$target"
    done
    report "| toolgate (all layers) | nothing | ${O_CPU[$full]} | — | ${O_AUDIT[$full]} | $(fmt_ms "${O_P50[$full]}") | $(fmt_ms "${O_P99[$full]}") | $(fmt_ms "${O_P999[$full]}") | ${O_ERR[$full]} |"
    for target in "${LAYER_OFF[@]}"; do
        local k=ly.$target
        report "| $target | ${LAYER_NAME[$target]} | ${O_CPU[$k]} |" \
            "$(awk -v a="${O_CPU[$full]}" -v b="${O_CPU[$k]}" 'BEGIN { printf "%+.1f", a - b }') |" \
            "${O_AUDIT[$k]} | $(fmt_ms "${O_P50[$k]}") | $(fmt_ms "${O_P99[$k]}") | $(fmt_ms "${O_P999[$k]}") | ${O_ERR[$k]} |"
    done
    report "| — | policy | cannot be switched off | see micro: policy | | | | | |"
    report "| — | audit | cannot be switched off | ≥ ${O_AUDIT[$full]} (writer thread) | | | | | |"
    report ""
    report "(layer's cost = CPU of the whole pipeline − CPU with that layer off, per request, at the same rate; the audit writer column is the tg-audit thread alone, a lower bound of audit's cost: the records are built on the worker.$( ((BENCH_ROUNDS > 1)) && echo " Medians of $BENCH_ROUNDS interleaved rounds."))"
}

# ---------------------------------------------------------------------------------------------
# workers: toolgate and nginx with 1 and with 2 workers, closed-loop wrk, in the same run.

section_workers() {
    local target w why
    start_backend json
    report ""
    report "### 1 vs 2 workers: tools/call get_patient, JSON answers (wrk, $BENCH_CONNECTIONS connections)"
    report ""
    report "| target | workers | req/s | p50 ms | p99 ms | server CPU µs/req | errors |"
    report "|---|---:|---:|---:|---:|---:|---|"
    for target in $BENCH_WORKERS_TARGETS; do
        why=$(target_missing "$target")
        if [[ -n $why ]]; then
            report "| $target | — | — | — | — | — | not run: $why |"
            continue
        fi
        for w in 1 2; do
            log "workers: $target with $w worker(s)"
            BENCH_WORKERS=$w "start_$target" json
            mcp_session "$TARGET_URL"
            run_wrk "wk.$target.$w" "$TARGET_URL" "$TARGET_PID"
            stop_bg "$TARGET_PID"
            summarize "wk.$target.$w"
            local k=wk.$target.$w
            report "| $target | $w | ${R_RPS[$k]} | $(fmt_ms "${R_P50[$k]}") | $(fmt_ms "${R_P99[$k]}") | ${R_CPU[$k]} | ${R_ERR[$k]} |"
        done
    done
    stop_bg "$BACKEND_PID"
    report ""
    for target in $BENCH_WORKERS_TARGETS; do
        [[ -n ${R_RPS[wk.$target.2]:-} ]] || continue
        report "- $target 2 workers/1 worker: throughput $(ratio "${R_RPS[wk.$target.2]}" "${R_RPS[wk.$target.1]}")x," \
            "CPU per request $(ratio "${R_CPU[wk.$target.2]}" "${R_CPU[wk.$target.1]}")x"
    done
    report "- the machine has $(nproc) CPUs, shared by wrk (${BENCH_THREADS} thread), the backend ($BENCH_BACKEND_WORKERS worker) and the proxy: a second worker can only use what the others leave."
}

# ---------------------------------------------------------------------------------------------
# mcp_peer: an MCP proxy from npm that relays streamable HTTP (bench/mcp-peer: pinned by its
# lockfile, installed by this script into BUILD_DIR/bench/mcp-peer with npm ci, never by
# `make test`), beside toolgate: closed loop, then both at the fixed rate of this run.

MCP_PEER_CLI=node_modules/@civic/passthrough-mcp-server/dist/cli.js

# Installs the peer when its lockfile changed; prints nothing and returns 0 when it is ready.
install_mcp_peer() {
    local dir=$BUILD_DIR/bench/mcp-peer
    if [[ -f $dir/$MCP_PEER_CLI && -f $dir/.bench-lock ]] &&
        cmp -s "$dir/.bench-lock" "$BENCH_DIR/mcp-peer/package-lock.json"; then
        return 0
    fi
    mkdir -p "$dir"
    cp "$BENCH_DIR/mcp-peer/package.json" "$BENCH_DIR/mcp-peer/package-lock.json" "$dir/"
    log "installing the MCP peer: npm ci in $dir"
    timeout 600 npm ci --prefix "$dir" --no-audit --no-fund --ignore-scripts \
        >"$dir/npm-ci.log" 2>&1 || return 1
    cp "$BENCH_DIR/mcp-peer/package-lock.json" "$dir/.bench-lock"
}

mcp_peer_missing() {
    command -v node >/dev/null || {
        echo "node not installed"
        return 0
    }
    command -v npm >/dev/null || {
        echo "npm not installed"
        return 0
    }
    install_mcp_peer || echo "npm ci of bench/mcp-peer failed (see $BUILD_DIR/bench/mcp-peer/npm-ci.log)"
}

# @civic/passthrough-mcp-server with no hooks: an MCP session towards the client and one
# towards the backend, every message relayed through the MCP SDK on both sides.
start_mcp_passthrough() {
    local port
    pick_port port
    mkdir -p "$TMP/mcp-peer"
    start_bg TARGET_PID "$TMP/mcp-peer/stderr.log" env PORT="$port" \
        TARGET_SERVER_URL="http://127.0.0.1:$BACKEND_PORT" TARGET_SERVER_MCP_PATH=/mcp \
        node "$BUILD_DIR/bench/mcp-peer/$MCP_PEER_CLI"
    wait_port "$port" "$TARGET_PID" "$TMP/mcp-peer/stderr.log"
    TARGET_URL="http://127.0.0.1:$port/mcp"
}

section_mcp_peer() {
    local target why peer=mcp_passthrough
    build_loadgen
    why=$(target_missing "$peer")
    report ""
    report "### Beside an MCP proxy from npm (@civic/passthrough-mcp-server, no hooks), JSON answers from the backend"
    report ""
    if [[ -n $why ]]; then
        report "not run: $why"
        return 0
    fi
    start_backend json
    openloop_rate
    report "| target | req/s (wrk, $BENCH_CONNECTIONS connections) | p50 ms | p99 ms | server CPU µs/req | errors |"
    report "|---|---:|---:|---:|---:|---|"
    for target in toolgate $peer; do
        log "mcp_peer: $target (wrk)"
        "start_$target" json
        mcp_session "$TARGET_URL"
        run_wrk "mp.$target" "$TARGET_URL" "$TARGET_PID"
        stop_bg "$TARGET_PID"
        summarize "mp.$target"
        report "| $target | ${R_RPS[mp.$target]} | $(fmt_ms "${R_P50[mp.$target]}") | $(fmt_ms "${R_P99[mp.$target]}") | ${R_CPU[mp.$target]} | ${R_ERR[mp.$target]} |"
    done
    report ""
    report "At the fixed rate of this run ($OPENLOOP_FROM):"
    report ""
    openloop_header
    for target in toolgate $peer; do
        log "mcp_peer: $target at $OPENLOOP_RATE req/s"
        "start_$target" json
        mcp_session "$TARGET_URL"
        run_loadgen "mp.$target" "$TARGET_URL" "$TARGET_PID" "$OPENLOOP_RATE"
        stop_bg "$TARGET_PID"
        summarize_loadgen "mp.$target"
        openloop_row "mp.$target" "$target"
    done
    stop_bg "$BACKEND_PID"
    report ""
    report "- toolgate/$peer (wrk): throughput $(ratio "${R_RPS[mp.toolgate]}" "${R_RPS[mp.$peer]}")x," \
        "p99 $(ratio "${R_P99[mp.toolgate]}" "${R_P99[mp.$peer]}")x," \
        "CPU per request $(ratio "${R_CPU[mp.toolgate]}" "${R_CPU[mp.$peer]}")x"
    openloop_ratios mp toolgate "$peer"
    report "- what each governs: toolgate as configured here verifies a token, scans arguments and results for PII, decides by policy, injects a signed identity and commits two audit records per call; the peer without hooks checks nothing (it relays every message through the MCP SDK, with a session of its own on each side); its hooks are remote tRPC services, not measured here."
}

# The audit log at scale: one generated store, the answers people ask of it, timed (wall
# clock and CPU of the command; other load on the machine shows in the wall clock only).
timed() { # timed LABEL CMD...: runs CMD (stdout counted, not kept), reports a table row
    local label=$1 t0 t1 lines u0 u1
    shift
    read -r u0 < <(awk '{print $14 + $15 + $16 + $17}' /proc/$$/stat)
    t0=$(date +%s.%N)
    lines=$("$@" 2>/dev/null | wc -l)
    t1=$(date +%s.%N)
    read -r u1 < <(awk '{print $14 + $15 + $16 + $17}' /proc/$$/stat)
    report "| $label | $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }') | $(awk -v a="$u0" -v b="$u1" -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", (b - a) / hz }') | $lines |"
}

# A throwaway PostgreSQL cluster on loopback for audit_scale (its own directory under TMP,
# fsync off: the generation's speed is not what is measured); sets PG_URL_BASE and PG_PID.
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
start_bench_postgres() {
    local dir=$TMP/pg port as=()
    [[ -x $PG_BIN/initdb ]] || die "PostgreSQL not installed ($PG_BIN); scripts/install-deps.sh installs it"
    pick_port port
    mkdir -p "$dir"
    # PostgreSQL refuses to run as root: the cluster belongs to the postgres user then.
    if [[ $EUID == 0 ]]; then
        chmod o+x "$TMP" # to reach its own directory, and nothing else of TMP
        chown postgres "$dir"
        as=(runuser -u postgres --)
    fi
    (cd / && "${as[@]}" "$PG_BIN/initdb" -D "$dir/data" -A trust -U toolgate -E UTF8 --no-sync \
        >"$TMP/pg-initdb.log" 2>&1) || die "initdb failed: $(tail -3 "$TMP/pg-initdb.log")"
    start_bg PG_PID "$TMP/pg.log" "${as[@]}" "$PG_BIN/postgres" -D "$dir/data" -p "$port" -k "$dir" \
        -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c shared_buffers=512MB
    wait_port "$port" "$PG_PID" "$TMP/pg.log"
    PG_URL_BASE="postgres://toolgate@127.0.0.1:$port"
    PG_STOP=("${as[@]}" "$PG_BIN/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop)
}

section_audit_scale() {
    local calls=${BENCH_AUDIT_CALLS:-10000000} store=${BENCH_AUDIT_STORE:-} gen_s=${BENCH_AUDIT_GEN_S:--}
    local backend=${BENCH_AUDIT_BACKEND:-sqlite} title="SQLite, compact format"
    local bytes records pub own_pg=0
    # An existing PostgreSQL store given by URL: measured where it is, no cluster started.
    [[ $store == postgres://* || $store == postgresql://* ]] && backend=postgres
    if [[ $backend == postgres && -n $store ]]; then
        title="PostgreSQL, compact format"
    elif [[ $backend == postgres ]]; then
        own_pg=1
        start_bench_postgres
        psql "$PG_URL_BASE/postgres" -qc "CREATE DATABASE audit_scale" >/dev/null || die "createdb failed"
        store=$PG_URL_BASE/audit_scale
        title="PostgreSQL, compact format"
    elif [[ $backend != sqlite ]]; then
        die "BENCH_AUDIT_BACKEND: sqlite or postgres, not \"$backend\""
    fi
    if [[ -z ${BENCH_AUDIT_STORE:-} ]]; then
        [[ $backend == sqlite ]] && store=$TMP/audit-scale.db
        local t0
        t0=$(date +%s)
        (cd "$TMP" && "$TOOLGATE" bench audit gen --calls "$calls" --out "$store" >/dev/null) ||
            die "audit gen failed"
        gen_s=$(($(date +%s) - t0))
    fi
    if [[ $backend == postgres ]]; then
        psql "$store" -qc "VACUUM ANALYZE" >/dev/null
        pub=${BENCH_AUDIT_PUBKEY:-$(ls "$TMP"/toolgate-audit-gen-*.ed25519.pem.pub 2>/dev/null | head -1)}
        bytes=$(psql "$store" -tAc "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relkind IN ('r', 'm')")
        records=$(psql "$store" -tAc "SELECT count(*) FROM audit_log")
        calls=$(psql "$store" -tAc "SELECT count(*) FROM audit_log WHERE kind = 1")
    else
        pub=${BENCH_AUDIT_PUBKEY:-$store.ed25519.pem.pub}
        bytes=$(stat -c %s "$store")
        records=$(sqlite3 -readonly "$store" "SELECT count(*) FROM audit_log")
        calls=$(sqlite3 -readonly "$store" "SELECT count(*) FROM audit_log WHERE kind = 1")
    fi
    report ""
    report "### Audit log at scale ($title)"
    report ""
    report "- store: $calls calls, $records records ($(awk -v r="$records" -v c="$calls" 'BEGIN { printf "%.2f", r / c }') a call), $bytes bytes = **$((bytes / calls)) bytes per call**; generated in ${gen_s} s"
    report ""
    report "| command | wall s | CPU s | lines out |"
    report "|---|---:|---:|---:|"
    timed "verify" "$TOOLGATE" audit verify "$store" --pubkey "$pub"
    timed "query --tool 'ehr.get_*' --since 30d --limit 1000" "$TOOLGATE" audit query "$store" --tool 'ehr.get_*' --since 30d --limit 1000
    timed "query --tool 'ehr.get_*' --since 30d (all rows)" "$TOOLGATE" audit query "$store" --tool 'ehr.get_*' --since 30d --format csv
    timed "query --user user00042@clinic-42.example --since 30d" "$TOOLGATE" audit query "$store" --user user00042@clinic-42.example --since 30d
    if [[ ${BENCH_AUDIT_COLD:-0} == 1 && $backend == sqlite ]]; then
        if [[ $EUID == 0 ]] && sync && echo 3 >/proc/sys/vm/drop_caches 2>/dev/null; then
            timed "query --user user00042@clinic-42.example --since 30d (page cache dropped)" "$TOOLGATE" audit query "$store" --user user00042@clinic-42.example --since 30d
        else
            report "| query --user (page cache dropped) | — | — | not run: dropping the page cache needs root |"
        fi
    fi
    timed "stats --since 30d" "$TOOLGATE" audit stats "$store" --since 30d
    timed "stats --since 30d --from-rows" "$TOOLGATE" audit stats "$store" --since 30d --from-rows
    report ""
    report "(verify: $records records; records/s = records / CPU s of its row.$([[ $backend == postgres ]] && echo " CPU s is toolgate's alone; the server's work shows in the wall clock."))"
    if ((own_pg)); then
        "${PG_STOP[@]}" >/dev/null 2>&1 || true
        stop_bg "$PG_PID"
    fi
}

# ---------------------------------------------------------------------------------------------
# Targets (goals, reported, never asserted).

report_targets() {
    local v
    report ""
    report "### Targets"
    report ""
    if [[ -n ${R_RPS[pt.toolgate]:-} && -n ${R_RPS[pt.nginx]:-} ]]; then
        v=$(ratio "${R_RPS[pt.toolgate]}" "${R_RPS[pt.nginx]}")
        report "- full governance throughput >= 0.6x nginx: ${v}x — $(awk -v v="$v" 'BEGIN { print (v >= 0.6) ? "met" : "not met" }')"
        v=$(ratio "${R_CPU[pt.toolgate]}" "${R_CPU[pt.nginx]}")
        report "- full governance CPU per call <= 3x nginx's per relayed request: ${v}x — $(awk -v v="$v" 'BEGIN { print (v <= 3) ? "met" : "not met" }')"
        if [[ -n ${R_RPS[pt.toolgate_bare]:-} ]]; then
            v=$(ratio "${R_RPS[pt.toolgate_bare]}" "${R_RPS[pt.nginx]}")
            report "- toolgate_bare (every layer off that can be) throughput >= 0.9x nginx: ${v}x — $(awk -v v="$v" 'BEGIN { print (v >= 0.9) ? "met" : "not met" }')"
        fi
    else
        report "- pass-through vs nginx: not measured in this run"
    fi
    if [[ -n ${O_P99[ol.toolgate]:-} && -n ${O_P99[ol.nginx]:-} ]]; then
        v=$(ratio "${O_P99[ol.toolgate]}" "${O_P99[ol.nginx]}")
        report "- p99 <= 2x nginx p99 at the same fixed rate ($OPENLOOP_RATE req/s, open loop): ${v}x — $(awk -v v="$v" 'BEGIN { print (v <= 2) ? "met" : "not met" }') (p99.9 $(ratio "${O_P999[ol.toolgate]}" "${O_P999[ol.nginx]}")x)"
    fi
    if [[ -n ${RSS_HWM[toolgate]:-} ]]; then
        v=$(awk -v k="${RSS_HWM[toolgate]}" 'BEGIN { printf "%.1f", k / 1024 }')
        report "- peak RSS <= 30 MiB with $BENCH_IDLE_CONNECTIONS idle connections: $v MiB — $(awk -v v="$v" -v ok="${RSS_OK[toolgate]}" -v n="$BENCH_IDLE_CONNECTIONS" 'BEGIN { print (v <= 30 && ok == n) ? "met" : "not met" }')"
    else
        report "- peak RSS with idle connections: not measured in this run"
    fi
}

# ---------------------------------------------------------------------------------------------

# Keys for the benchmark's identity provider and for the identity toolgate injects, and a
# token for the benchmark user (sent to every target; the backend ignores it).
bench_identity() {
    mkdir -p "$TMP/keys"
    "$TOOLGATE" keys generate --alg EdDSA --out "$TMP/keys/idp" >/dev/null
    "$TOOLGATE" keys generate --alg EdDSA --out "$TMP/keys/egress" >/dev/null
    if [[ -z $BENCH_AUTHORIZATION ]]; then
        BENCH_AUTHORIZATION="Bearer $("$TOOLGATE" token --key "$TMP/keys/idp/private.pem" \
            --iss https://idp.bench.invalid/ --aud http://toolgate.bench.invalid/mcp \
            --sub bench-user --roles bench --scopes tools.read --client wrk --ttl 2h)"
        export BENCH_AUTHORIZATION
    fi
}

main() {
    local s selected=() name

    [[ -x $TOOLGATE ]] || die "$TOOLGATE is missing; run \`make bench\`"
    [[ -x $BACKEND ]] || die "$BACKEND is missing; run \`make bench\`"
    command -v wrk >/dev/null || die "wrk is not installed (scripts/install-deps.sh installs it)"
    command -v curl >/dev/null || die "curl is not installed"
    if [[ $BENCH_CALLGRIND == 1 ]]; then
        command -v valgrind >/dev/null && command -v callgrind_annotate >/dev/null ||
            die "BENCH_CALLGRIND=1 needs valgrind (scripts/install-deps.sh installs it)"
    fi

    if [[ -n $BENCH_ONLY ]]; then
        IFS=', ' read -r -a selected <<<"$BENCH_ONLY"
        for name in "${selected[@]}"; do
            [[ " ${SECTIONS[*]} ${EXTRA_SECTIONS[*]} " == *" $name "* ]] || die "BENCH_ONLY: no section \"$name\" (sections: ${SECTIONS[*]} ${EXTRA_SECTIONS[*]})"
        done
    else
        selected=("${SECTIONS[@]}")
    fi

    # 1,000 client connections plus as many upstream ones, in one process each.
    ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

    TMP=$(mktemp -d "${TMPDIR:-/tmp}/toolgate-bench.XXXXXX")
    REPORT=$TMP/report.md

    local commit cpu started
    commit=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
    if [[ -n $(git -C "$REPO" status --porcelain --untracked-files=no 2>/dev/null) ]]; then
        commit+=" (with uncommitted changes)"
    fi
    cpu=$(awk -F': *' '/^model name/ {print $2; exit}' /proc/cpuinfo)
    started=$(date -u +%s)
    report ""
    report "## $(date -u '+%Y-%m-%d %H:%M UTC') — commit $commit"
    report ""
    report "- machine: $(nproc) CPUs, ${cpu:-unknown CPU}, Linux $(uname -r), $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo)"
    report "- binaries: $("$TOOLGATE" --version 2>&1 | head -1), $("$NGINX" -v 2>&1 | sed 's/.*: //'), $("$H2O" --version 2>/dev/null | head -1 | sed 's/ version / /'), $(wrk -v 2>&1 | head -1 | awk '{print "wrk " $2}')"
    report "- load: wrk $BENCH_THREADS thread(s), $BENCH_CONNECTIONS connections, ${BENCH_DURATION} s measured after ${BENCH_WARMUP} s warm-up, one target at a time, $BENCH_ROUNDS round(s); $BENCH_WORKERS worker(s) per proxy, backend $BENCH_BACKEND_WORKERS worker(s)"
    report "- sections: ${selected[*]}"

    bench_identity
    for s in "${selected[@]}"; do
        log "section $s"
        "section_$s"
    done
    report_targets
    report ""
    report "(run took $(($(date -u +%s) - started)) s)"

    cat "$REPORT"
    if [[ $BENCH_RESULTS != - ]]; then
        if [[ ! -s $BENCH_RESULTS ]]; then
            {
                echo "# Benchmark results"
                echo
                echo "Appended by \`make bench\` (bench/run.sh); newest last. How to read them:"
                echo "docs/benchmarks.md. Compare rows within one run, not across runs or machines."
            } >"$BENCH_RESULTS"
        fi
        cat "$REPORT" >>"$BENCH_RESULTS"
        log "appended to $BENCH_RESULTS"
    fi
}

main "$@"
