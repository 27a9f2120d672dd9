-- Shared by the API benchmark's wrk scripts (bench/api_bench.sh).
-- Environment: CORRAL_TOKEN (bearer token; empty for the bare listener, which
-- ignores it but still receives the header so requests are the same size),
-- CORRAL_RUN_ID (makes created names unique across runs).

wrk.headers["Authorization"] = "Bearer " .. (os.getenv("CORRAL_TOKEN") or "")
wrk.headers["Accept"] = "application/json"

-- wrk.format(method, path, headers, body) uses `headers` instead of
-- wrk.headers, not merged with them: scripts pass with_headers{...}.
function with_headers(extra)
  local h = {}
  for k, v in pairs(wrk.headers) do h[k] = v end
  for k, v in pairs(extra) do h[k] = v end
  return h
end

local threads = {}
local next_id = 0

-- Gives every wrk thread an id (0..t-1) and the thread count, for scripts that
-- partition names between threads.
function setup(thread)
  thread:set("thread_id", next_id)
  table.insert(threads, thread)
  next_id = next_id + 1
end

-- One machine-readable line for the driver script, after wrk's own report.
-- Latency figures are in microseconds; non2xx counts answers outside 200-399
-- (wrk's "status" errors); failed adds connect/read/write/timeout errors.
function done(summary, latency, requests)
  local e = summary.errors
  local seconds = summary.duration / 1e6
  io.write(string.format(
    "RESULT requests=%d rps=%.1f p50_us=%d p90_us=%d p99_us=%d max_us=%d non2xx=%d failed=%d bytes=%d\n",
    summary.requests, summary.requests / seconds,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    e.status, e.connect + e.read + e.write + e.timeout, summary.bytes))
end
