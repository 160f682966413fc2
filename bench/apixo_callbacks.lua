-- wrk script: every request is a new APIXO success callback (the shape of
-- receiver/fakes/payloads/apixo/callback_success.json) with a taskId of its own,
-- "task_<prefix>t<thread>n<counter>" (APIXO ids are task_...), so on a relay source URL
-- each one creates a job and its event.
--
--   wrk -t2 -c32 -d10s --latency -s bench/apixo_callbacks.lua URL -- PREFIX
--
-- PREFIX (letters only) tells runs apart in the store. At the end one line
-- "WRK_JSON {...}" carries the counts and latency percentiles (microseconds) for bench scripts.

local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("thread_number", #threads)
end

local prefix = "task"
local counter = 0

local template = '{"code":200,"message":"success","data":{"taskId":"%s","state":"success",'
  .. '"resultJson":"{\\"resultUrls\\":[\\"https://cdn.apixo.ai/output/%s.jpg\\"]}",'
  .. '"costTime":12500,"createTime":1704067200000,"completeTime":1704067212500}}'

function init(args)
  prefix = (args[1] or "task") .. "t" .. tostring(thread_number)
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  counter = counter + 1
  local task_id = "task_" .. prefix .. "n" .. tostring(counter)
  return wrk.format(nil, nil, nil, string.format(template, task_id, task_id))
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,"status":%d,'
      .. '"timeout":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
