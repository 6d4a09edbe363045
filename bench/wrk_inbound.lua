-- wrk script for bench/loadgen.py: replay pre-signed request bodies, each exactly once,
-- and stop every thread once it has its share of responses (loadgen.py then ends wrk).
--
--   wrk -t T -c C -d 600s --timeout 30s -s bench/wrk_inbound.lua URL -- FILE COUNT T
--
-- FILE has one request per line, "<headers>\t<body>", the headers as "Name: value" pairs
-- joined by \x1f (ASCII unit separator); the first
-- COUNT lines are the measured ones, the lines after them feed the requests still in flight
-- when a thread stops (so that no body is ever sent twice). Thread t sends lines t, t+T, ...
-- done() prints one line "WRKJSON {...}" that loadgen.py parses.

local threads = {}
local next_id = 0

function setup(thread)
  thread:set("tid", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

function init(args)
  local path, count, nthreads = args[1], tonumber(args[2]), tonumber(args[3])
  requests_ = {}
  target = 0
  sent = 0
  received = 0
  non2xx = 0
  local i = 0
  for line in io.lines(path) do
    if i % nthreads == tid then
      local fields, body = line:match("^(.-)\t(.*)$")
      local headers = {}
      for pair in fields:gmatch("[^\31]+") do
        local name, value = pair:match("^(.-): (.*)$")
        headers[name] = value
      end
      requests_[#requests_ + 1] = wrk.format("POST", wrk.path, headers, body)
      if i < count then
        target = target + 1
      end
    end
    i = i + 1
  end
end

function request()
  sent = sent + 1
  if sent > #requests_ then
    -- Out of spare bodies (cannot happen with >= C spares): repeat the last one.
    return requests_[#requests_]
  end
  return requests_[sent]
end

function response(status, headers, body)
  received = received + 1
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
  end
  if received == target then
    -- wrk's main thread sleeps for the whole -d duration: tell loadgen.py, which then
    -- interrupts it with SIGINT, so that the measured duration ends about here.
    io.write("WRKDONE\n")
    io.flush()
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  local non2xx_total, sent_total = 0, 0
  for _, thread in ipairs(threads) do
    non2xx_total = non2xx_total + (thread:get("non2xx") or 0)
    sent_total = sent_total + (thread:get("sent") or 0)
  end
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"completed": %d, "duration_us": %d, "non_2xx": %d, "sent": %d, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
    '"latency_us": {"mean": %.1f, "p50": %d, "p90": %d, "p99": %d, "max": %d}}\n',
    summary.requests, summary.duration, non2xx_total, sent_total,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max))
end
