-- One step of the boot conversation for wrk: each thread sends the requests listed in
-- <dir>/in.<thread> (lines "METHOD<TAB>PATH<TAB>BODY", BODY optional), in order, one per
-- request, with "Connection: close" (iPXE and Ignition open a connection per request).
-- mode "cycle": start the list over (a duration-limited run of repeatable requests);
-- mode "once": every line once (requests that change state). wrk itself always runs for its
-- whole duration, so a thread that has sent its last line parks its connections (delay) and
-- writes "<start> <end> <answered>" to <dir>/rate.<thread> (wall clock seconds, answers so
-- far), then "drained" to <dir>/drained.<thread> when every sent request was answered; the
-- caller computes the rate from those and ends wrk with SIGINT.
-- Every 2xx response whose body names "mac=...&token=..." writes "MAC TOKEN" to
-- <dir>/out.<thread> (the next step's input; wrk does not say which request a response
-- answers, so what a body does not name is read from the store afterwards).
-- done() prints one line "WRKJSON {...}" with the counts and latency percentiles (us).
-- Arguments after "--": DIR MODE

local counter = 0

function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
end

local lines, idx, n, mode, out, dir, started, answered, parked, reserved

local function now()
  local pipe = io.popen("date +%s.%N")
  local value = pipe:read("*l")
  pipe:close()
  return value
end

function init(args)
  dir = args[1]
  mode = args[2]
  lines = {}
  for line in io.lines(dir .. "/in." .. tid) do
    local method, path, body = line:match("^(%u+)\t([^\t]+)\t?(.*)$")
    local headers = { ["Connection"] = "close" }
    if body ~= "" then headers["Content-Type"] = "application/json" else body = nil end
    lines[#lines + 1] = wrk.format(method, path, headers, body)
  end
  n = #lines
  idx = 0
  answered = 0
  reserved = 0
  parked = false
  out = io.open(dir .. "/out." .. tid, "w")
  out:setvbuf("line")
  started = now()
end

function delay()
  -- Called once before each request (wrk's delayed connections): reserves the next line.
  if mode == "once" then
    if reserved >= n then
      if not parked then
        parked = true
        local f = io.open(dir .. "/rate." .. tid, "w")
        f:write(started .. " " .. now() .. " " .. answered .. "\n")
        f:close()
      end
      return 3600000
    end
    reserved = reserved + 1
  end
  return 0
end

function request()
  idx = idx + 1
  if idx > n then idx = (mode == "once") and n or 1 end
  return lines[idx]
end

function response(status, headers, body)
  answered = answered + 1
  if status >= 200 and status < 300 then
    local mac, token = body:match("mac=([%x%-]+)&token=([%w_%-]+)")
    if token then out:write(mac .. " " .. token .. "\n") end
  end
  if parked and answered == n then
    io.open(dir .. "/drained." .. tid, "w"):close()
  end
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
