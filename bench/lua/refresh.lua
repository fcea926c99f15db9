-- Refresh-token grants with rotation: every grant consumes one refresh token and returns the
-- next one, so each wrk thread keeps a pool of live tokens. BENCH_TOKENS names a file with one
-- token per line; thread i of BENCH_THREADS takes lines i, i+T, i+2T... A failed grant loses
-- its token; the pool holds more tokens than connections to absorb a few.
dofile(os.getenv("BENCH_LUA_DIR") .. "/report.lua")

local counter = 0
local threads = {}

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

function init(args)
  pool = {}
  lost = 0      -- 200 responses without a new refresh token (no rotation): not a success here
  starved = 0
  local T = tonumber(os.getenv("BENCH_THREADS"))
  local i = 0
  for line in io.lines(os.getenv("BENCH_TOKENS")) do
    if line ~= "" and i % T == id then table.insert(pool, line) end
    i = i + 1
  end
  prefix = "grant_type=refresh_token&refresh_token="
  headers = {["Content-Type"] = "application/x-www-form-urlencoded",
             ["Authorization"] = "Basic " .. os.getenv("BENCH_BASIC")}
end

function request()
  local token = table.remove(pool)
  if not token then
    -- every live token is in flight or was lost to a failed grant: send a dud (it fails fast)
    starved = starved + 1
    token = "exhausted"
  end
  return wrk.format("POST", nil, headers, prefix .. token)
end

function response(status, headers, body)
  local token = string.match(body, '"refresh_token"%s*:%s*"([^"]+)"')
  if token then
    table.insert(pool, token)
  elseif status == 200 then
    lost = lost + 1  -- failures (non-200) are counted by wrk itself; their tokens are gone too
  end
end

function done(summary, latency, requests)
  local total, dud = 0, 0
  for _, t in ipairs(threads) do
    total = total + (t:get("lost") or 0)
    dud = dud + (t:get("starved") or 0)
  end
  io.write(string.format('\nBENCH_LOST %d\nBENCH_STARVED %d\n', total, dud))
  report(summary, latency, requests)
end
