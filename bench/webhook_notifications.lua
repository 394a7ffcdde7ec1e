-- wrk script for bench/webhook_ingestion.py: valid Google push notifications (empty body,
-- the X-Goog-* headers Google sends) rotating over the channels listed in the Lua file given
-- after `--`, and one line `WRK_JSON {...}` at the end with throughput, latency percentiles
-- and the count of every HTTP status seen.
--
--   wrk -t1 -c16 -d20s -s bench/webhook_notifications.lua http://HOST/webhooks/google -- FILE
--
-- FILE returns a list of {id = ..., token = ..., resource = ...} tables.

local threads = {}

function setup(thread)
  thread:set("thread_number", #threads)
  table.insert(threads, thread)
end

local channels
local next_index
local message_number
statuses = {}

function init(args)
  channels = dofile(args[1])
  -- Threads start at different channels so they do not walk the list in step.
  next_index = (thread_number * 7919) % #channels
  message_number = 1000000 * (thread_number + 1)
end

function request()
  local channel = channels[next_index + 1]
  next_index = (next_index + 1) % #channels
  message_number = message_number + 1
  return wrk.format("POST", nil, {
    ["Content-Length"] = "0",
    ["User-Agent"] = "APIs-Google; (+https://developers.google.com/webmasters/APIs-Google.html)",
    ["X-Goog-Channel-ID"] = channel.id,
    ["X-Goog-Channel-Token"] = channel.token,
    ["X-Goog-Channel-Expiration"] = "Wed, 01 Jan 2031 00:00:00 GMT",
    ["X-Goog-Resource-ID"] = channel.resource,
    ["X-Goog-Resource-State"] = "exists",
    ["X-Goog-Message-Number"] = tostring(message_number),
    ["X-Goog-Resource-URI"] = channel.uri,
  })
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local counts = {}
  for _, thread in ipairs(threads) do
    for status, count in pairs(thread:get("statuses")) do
      counts[status] = (counts[status] or 0) + count
    end
  end
  local shown = {}
  for status, count in pairs(counts) do
    table.insert(shown, string.format('"%d": %d', status, count))
  end
  local errors = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "statuses": {%s}, '
      .. '"socket_errors": {"connect": %d, "read": %d, "write": %d, "timeout": %d}, '
      .. '"latency_us": {"mean": %.1f, "p50": %d, "p90": %d, "p99": %d, "max": %d}}\n',
    summary.requests, summary.duration, table.concat(shown, ", "),
    errors.connect, errors.read, errors.write, errors.timeout,
    latency.mean, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max
  ))
end
