-- POST a client_credentials grant, client_secret_basic. BENCH_BASIC = base64(id:secret),
-- BENCH_BODY = the form body (the baseline wants a scope, the provider may not).
dofile(os.getenv("BENCH_LUA_DIR") .. "/report.lua")
wrk.method = "POST"
wrk.body = os.getenv("BENCH_BODY")
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = "Basic " .. os.getenv("BENCH_BASIC")
done = report
