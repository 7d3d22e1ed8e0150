-- wrk script for benches/ingest_vs_vm.rs: POSTs line-protocol bodies to the URL given to wrk
-- (e.g. http://127.0.0.1:PORT/write?precision=s).
--
-- Arguments (after wrk's `--`): <dir> <templates> <base_ts> <step_s> <threads>
--   <dir>/body<k>.lp (k = 0 .. templates-1) hold the points of one request, one per line,
--   without timestamps. Every request appends one timestamp to all of its lines: base_ts +
--   (n * threads + thread id) * step_s, n counting the thread's requests, so no two requests
--   of a run (or of later runs started at a higher base) write the same (series, time).
--
-- Prints one line for the caller to parse:
--   RESULT requests=R non2xx=B errors=E duration_us=D max_n=N p50_ms=.. p99_ms=.. status=S
-- where non2xx counts answers outside 200-299 (S is the last such status, 0 if none) and
-- max_n is the most requests one thread started (the next run's base must skip past them).

local threads = {}

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  local dir = args[1]
  local ntemplates = tonumber(args[2])
  base = tonumber(args[3])
  step = tonumber(args[4])
  nthreads = tonumber(args[5])
  templates = {}
  for k = 0, ntemplates - 1 do
    local f = assert(io.open(dir .. "/body" .. k .. ".lp", "rb"))
    local lines = {}
    for line in f:lines() do
      lines[#lines + 1] = line
    end
    f:close()
    -- an empty last element makes table.concat end with the separator too: one copy a request
    lines[#lines + 1] = ""
    templates[k + 1] = lines
  end
  n = 0
  bad = 0
  last_bad = 0
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "text/plain; charset=utf-8"
end

function request()
  local ts = base + (n * nthreads + id) * step
  local lines = templates[(n % #templates) + 1]
  n = n + 1
  local body = table.concat(lines, string.format(" %.0f\n", ts))
  return wrk.format(nil, nil, nil, body)
end

function response(status, headers, body)
  if status < 200 or status > 299 then
    bad = bad + 1
    last_bad = status
  end
end

function done(summary, latency, requests)
  local nbad, maxn, status = 0, 0, 0
  for _, t in ipairs(threads) do
    nbad = nbad + t:get("bad")
    maxn = math.max(maxn, t:get("n"))
    if t:get("last_bad") ~= 0 then
      status = t:get("last_bad")
    end
  end
  local e = summary.errors
  io.write(string.format(
    "RESULT requests=%d non2xx=%d errors=%d duration_us=%d max_n=%d p50_ms=%.1f p99_ms=%.1f status=%d\n",
    summary.requests, nbad, e.connect + e.read + e.write + e.timeout, summary.duration, maxn,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, status))
end
