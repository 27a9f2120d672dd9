-- POST a new Model with a unique name to the collection URL given to wrk:
-- <run>-<thread>-<n>, so threads and runs never collide.
dofile((os.getenv("CORRAL_WRK_DIR") or "bench/wrk") .. "/common.lua")

local run_id = os.getenv("CORRAL_RUN_ID") or tostring(os.time())
local headers = with_headers({["Content-Type"] = "application/json"})
local counter = 0

function request()
  counter = counter + 1
  local name = string.format("c-%s-%d-%d", run_id, thread_id or 0, counter)
  local body = '{"apiVersion":"corral.dev/v1alpha1","kind":"Model","metadata":{"name":"' ..
    name .. '"},"spec":{"engine":"sim","source":"sim://bench"}}'
  return wrk.format("POST", nil, headers, body)
end
