-- Authorized GET of the URL given to wrk (one object, or a list). The request
-- is built once: no Lua runs per request.
dofile((os.getenv("CORRAL_WRK_DIR") or "bench/wrk") .. "/common.lua")
