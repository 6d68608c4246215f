-- wrk script: POST one MCP tools/call (get_patient) on an established session.
--
-- Environment: BENCH_SESSION (Mcp-Session-Id from an initialize call, required),
-- BENCH_PROTOCOL (MCP-Protocol-Version, default 2025-06-18), BENCH_PATIENT (default P42),
-- BENCH_AUTHORIZATION (sent as Authorization when set), BENCH_BODY (another JSON-RPC body to
-- POST instead of the tools/call).
-- done() prints one machine-readable line that bench/run.sh parses:
--   BENCH_RESULT requests=N duration_us=N rps=F p50_us=N p90_us=N p99_us=N max_us=N
--                errors_connect=N errors_read=N errors_write=N errors_status=N errors_timeout=N

local session = os.getenv("BENCH_SESSION")
if session == nil or session == "" then
   io.stderr:write("tools-call.lua: BENCH_SESSION is not set\n")
   os.exit(2)
end

wrk.method = "POST"
wrk.body = os.getenv("BENCH_BODY")
if wrk.body == nil or wrk.body == "" then
   wrk.body = '{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"get_patient",' ..
      '"arguments":{"patient_id":"' .. (os.getenv("BENCH_PATIENT") or "P42") .. '"}}}'
end
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "application/json, text/event-stream"
wrk.headers["Mcp-Session-Id"] = session
wrk.headers["MCP-Protocol-Version"] = os.getenv("BENCH_PROTOCOL") or "2025-06-18"
local authorization = os.getenv("BENCH_AUTHORIZATION")
if authorization ~= nil and authorization ~= "" then
   wrk.headers["Authorization"] = authorization
end

function done(summary, latency, requests)
   local secs = summary.duration / 1e6
   local e = summary.errors
   io.write(string.format(
      "BENCH_RESULT requests=%d duration_us=%d rps=%.2f p50_us=%d p90_us=%d p99_us=%d max_us=%d " ..
      "errors_connect=%d errors_read=%d errors_write=%d errors_status=%d errors_timeout=%d\n",
      summary.requests, summary.duration, summary.requests / secs,
      latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
      e.connect, e.read, e.write, e.status, e.timeout))
end
