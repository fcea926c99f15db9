-- GET the URL given on the command line (discovery, JWKS).
dofile(os.getenv("BENCH_LUA_DIR") .. "/report.lua")
done = report
