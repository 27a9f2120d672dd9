-- JSON merge patch of a label on pre-created Models <prefix>0..<prefix>N-1
-- under the collection URL given to wrk (CORRAL_UPDATE_OBJECTS, default 200;
-- CORRAL_UPDATE_PREFIX, default "u-"). Threads take disjoint objects and walk
-- them round-robin, so two requests in flight on one object are rare (that
-- would need one connection to be N/connections requests behind the others).
dofile((os.getenv("CORRAL_WRK_DIR") or "bench/wrk") .. "/common.lua")

local objects = tonumber(os.getenv("CORRAL_UPDATE_OBJECTS") or "200")
local prefix = os.getenv("CORRAL_UPDATE_PREFIX") or "u-"
local nthreads = tonumber(os.getenv("CORRAL_WRK_THREADS") or "1")
local headers = with_headers({["Content-Type"] = "application/merge-patch+json"})
local counter = 0

function request()
  local index = ((thread_id or 0) + nthreads * counter) % objects
  counter = counter + 1
  local body = '{"metadata":{"labels":{"bench-seq":"' .. counter .. '"}}}'
  return wrk.format("PATCH", wrk.path .. "/" .. prefix .. index,
                    headers, body)
end
