-- wrk script for the Gatewayz bench: POST a JSON body, print the run's figures as one JSON line.
--
-- Environment: BENCH_BODY_FILE (the JSON body to POST), BENCH_HEADERS (optional request headers,
-- one `name: value` a line: the route's credential, e.g. `authorization: Bearer …` or `x-api-key: …`),
-- BENCH_TOKENS (optional, below).
-- Usage: BENCH_BODY_FILE=body.json wrk -t1 -c10 -d10s -s bench/wrk_post.lua http://127.0.0.1:9100/v1/chat/completions
-- The `done` hook prints `BENCH_JSON {...}`: requests, duration, socket errors, non-2xx/3xx
-- responses (wrk's `status` errors count codes > 399) and latency percentiles in microseconds.

local path = os.getenv("BENCH_BODY_FILE")
local f = assert(io.open(path, "rb"), "BENCH_BODY_FILE is not readable")
local body = f:read("*a")
f:close()

wrk.method = "POST"
wrk.body = body
wrk.headers["Content-Type"] = "application/json"
for line in (os.getenv("BENCH_HEADERS") or ""):gmatch("[^\n]+") do
  local name, value = line:match("^([^:]+):%s*(.*)$")
  if name then
    wrk.headers[name] = value
  end
end

-- BENCH_TOKENS (optional): API keys, space-separated; each request carries the next one in turn
-- (`authorization: Bearer …`), so that a closed loop spreads over several users.
local tokens = {}
for token in (os.getenv("BENCH_TOKENS") or ""):gmatch("%S+") do
  tokens[#tokens + 1] = token
end
if #tokens > 0 then
  local turn = 0
  request = function()
    turn = turn % #tokens + 1
    wrk.headers["authorization"] = "Bearer " .. tokens[turn]
    return wrk.format()
  end
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"p999_us":%d,"max_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9),
    latency.max, latency.mean))
end
