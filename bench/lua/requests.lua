-- A list of requests for wrk: each thread sends the requests listed in <dir>/in.<thread>
-- (lines "METHOD<TAB>PATH<TAB>BODY", BODY optional) in order, starting over at the end, one
-- per connection ("Connection: close", as iPXE and Ignition make them).
-- done() prints one line "WRKJSON {...}" with the counts and latency percentiles (us).
-- Arguments after "--": DIR

local counter = 0

function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
end

local lines, idx, n

function init(args)
  lines = {}
  for line in io.lines(args[1] .. "/in." .. tid) do
    local method, path, body = line:match("^(%u+)\t([^\t]+)\t?(.*)$")
    local headers = { ["Connection"] = "close" }
    if body ~= "" then headers["Content-Type"] = "application/json" else body = nil end
    lines[#lines + 1] = wrk.format(method, path, headers, body)
  end
  n = #lines
  idx = 0
end

function request()
  idx = idx % n + 1
  return lines[idx]
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"duration_us": %d, "requests": %d, "bytes": %d, "connect": %d, "read": %d, ' ..
    '"write": %d, "status": %d, "timeout": %d, "p50": %d, "p90": %d, "p99": %d, "max": %d, ' ..
    '"mean": %.1f}\n',
    summary.duration, summary.requests, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean))
end
