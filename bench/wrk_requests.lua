-- wrk script of the bookingflow benchmarks.
--
-- Environment:
--   WRK_METHOD    request method (default GET)
--   WRK_PATH      path when no requests file is given (default /)
--   WRK_REQUESTS  optional file of prepared requests, one per line, tab-separated:
--                   <path> [<Header-Name>: <value>]... <body>
--                 the last field is the body (empty for none). Each wrk thread keeps the lines
--                 whose number modulo WRK_THREADS is its own index, so threads never share a line;
--                 a thread that used up its share starts it again and counts a "wrap".
--   WRK_THREADS   the -t given to wrk (default 1)
--
-- done() prints one line, `WRK_JSON {...}`, that bench/_harness.py reads.

local method = os.getenv("WRK_METHOD") or "GET"
local default_path = os.getenv("WRK_PATH") or "/"
local requests_file = os.getenv("WRK_REQUESTS")
local thread_count = tonumber(os.getenv("WRK_THREADS") or "1")

local counter = 0
local threads = {}

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

function init(args)
  prepared = {}
  prepared_count = 0
  wraps = 0
  position = 0
  if requests_file == nil or requests_file == "" then
    return
  end
  local n = 0
  for line in io.lines(requests_file) do
    if n % thread_count == id then
      local fields = {}
      for field in (line .. "\t"):gmatch("([^\t]*)\t") do
        fields[#fields + 1] = field
      end
      local path = fields[1]
      local body = fields[#fields]
      local headers = {}
      for i = 2, #fields - 1 do
        local name, value = fields[i]:match("^([^:]+):%s*(.*)$")
        if name then
          headers[name] = value
        end
      end
      if body == "" or #fields < 2 then
        body = nil
      else
        headers["Content-Type"] = "application/json"
      end
      prepared[#prepared + 1] = wrk.format(method, path, headers, body)
    end
    n = n + 1
  end
  prepared_count = #prepared
end

function request()
  if #prepared == 0 then
    return wrk.format(method, default_path)
  end
  position = position + 1
  if position > #prepared then
    position = 1
    wraps = wraps + 1
  end
  return prepared[position]
end

function done(summary, latency, requests)
  local total_wraps, total_prepared = 0, 0
  for _, thread in ipairs(threads) do
    total_wraps = total_wraps + (thread:get("wraps") or 0)
    total_prepared = total_prepared + (thread:get("prepared_count") or 0)
  end
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_ms":{"p50":%.3f,"p90":%.3f,"p99":%.3f,"max":%.3f,"mean":%.3f},' ..
    '"wraps":%d,"prepared":%d}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000, latency.mean / 1000,
    total_wraps, total_prepared))
end
