-- Authenticated order POSTs for wrk, optionally paced, with a summary line for machines.
--
--   wrk -t1 -c32 -d10s --timeout 5s -s loadtests/wrk/orders.lua \
--       http://127.0.0.1:8000/v1/orders -- REQUESTS_FILE [RATE_PER_S [THREADS]]
--
-- REQUESTS_FILE holds one request a line: an API key, a tab, then the JSON order body. Each
-- thread sends the lines in turn (so the trader keys and the bodies rotate), starting at an
-- offset of its own.
--
-- Without RATE_PER_S the load is closed-loop: every connection sends its next request as soon
-- as the answer to the previous one arrives. With RATE_PER_S (the whole run's rate; give THREADS
-- equal to wrk's -t, default 1) the offered load is paced: each thread hands out send slots on
-- a fixed schedule through delay(), and a free connection waits for the next unclaimed slot. A
-- slot claimed after its time means every connection was busy: the run counts those as "late"
-- and keeps the largest lag, so a server that cannot keep up is visible in the summary.
--
-- done() prints one line: "wrk-result " followed by a JSON object with the request count, the
-- duration, the latency percentiles in milliseconds, the responses with a status >= 400
-- ("non_2xx", as wrk counts them) and the socket errors.

local ffi = require("ffi")
ffi.cdef([[
typedef struct { long tv_sec; long tv_nsec; } wrk_orders_timespec;
int clock_gettime(int clock_id, wrk_orders_timespec *tp);
]])
local CLOCK_MONOTONIC = 1
local clock_buffer = ffi.new("wrk_orders_timespec")

local function now_ms()
   ffi.C.clock_gettime(CLOCK_MONOTONIC, clock_buffer)
   return tonumber(clock_buffer.tv_sec) * 1000 + tonumber(clock_buffer.tv_nsec) / 1e6
end

-- Main state: the threads, numbered, so that done() can read their counters.
local threads = {}

function setup(thread)
   table.insert(threads, thread)
   thread:set("thread_number", #threads)
end

-- Thread state.
local requests = {}
local index = 0
local interval_ms = nil
local next_slot = nil
late = 0
max_lag_ms = 0
rate_per_s = 0

local function read_requests(path)
   local file, problem = io.open(path, "r")
   if file == nil then
      error("cannot read the requests file: " .. tostring(problem))
   end
   for line in file:lines() do
      local key, body = line:match("^([^\t]+)\t(.+)$")
      if key ~= nil then
         local headers = {}
         for name, value in pairs(wrk.headers) do
            headers[name] = value
         end
         headers["Authorization"] = "Bearer " .. key
         headers["Content-Type"] = "application/json"
         requests[#requests + 1] = wrk.format("POST", wrk.path, headers, body)
      end
   end
   file:close()
   if #requests == 0 then
      error("no request in " .. path .. " (one 'KEY<TAB>BODY' a line)")
   end
end

local function paced_delay()
   local now = now_ms()
   if next_slot == nil then
      next_slot = now
   end
   local slot = next_slot
   next_slot = slot + interval_ms
   local wait = slot - now
   if wait < 0 then
      if -wait > 1 then
         late = late + 1
      end
      if -wait > max_lag_ms then
         max_lag_ms = -wait
      end
      return 0
   end
   return math.floor(wait + 0.5)
end

function init(args)
   if args[1] == nil then
      error("usage: wrk ... -s orders.lua URL -- REQUESTS_FILE [RATE_PER_S [THREADS]]")
   end
   read_requests(args[1])
   local number = wrk.thread:get("thread_number") or 1
   index = ((number - 1) * 7919) % #requests
   local rate = tonumber(args[2] or "")
   if rate ~= nil and rate > 0 then
      local thread_count = tonumber(args[3] or "1") or 1
      rate_per_s = rate
      interval_ms = 1000 * thread_count / rate
      -- Defined only when pacing: wrk checks for delay() after init(), and a delay of 0 would
      -- still cost a timer per request.
      delay = paced_delay
   end
end

function request()
   index = index % #requests + 1
   return requests[index]
end

function done(summary, latency, requests_stats)
   local late_total, lag = 0, 0
   for _, thread in ipairs(threads) do
      late_total = late_total + (thread:get("late") or 0)
      local thread_lag = thread:get("max_lag_ms") or 0
      if thread_lag > lag then
         lag = thread_lag
      end
   end
   local rate = 0
   if #threads > 0 then
      rate = threads[1]:get("rate_per_s") or 0
   end
   local errors = summary.errors
   local function ms(value)
      return value / 1000
   end
   io.write(string.format(
      'wrk-result {"requests":%d,"duration_s":%.6f,"bytes":%d,"non_2xx":%d,'
         .. '"socket_errors":{"connect":%d,"read":%d,"write":%d,"timeout":%d},'
         .. '"latency_ms":{"min":%.3f,"mean":%.3f,"max":%.3f,"stdev":%.3f,'
         .. '"p50":%.3f,"p90":%.3f,"p99":%.3f,"p99.9":%.3f},'
         .. '"target_rate_per_s":%.3f,"late":%d,"max_lag_ms":%.3f}\n',
      summary.requests, summary.duration / 1e6, summary.bytes, errors.status,
      errors.connect, errors.read, errors.write, errors.timeout,
      ms(latency.min), ms(latency.mean), ms(latency.max), ms(latency.stdev),
      ms(latency:percentile(50)), ms(latency:percentile(90)),
      ms(latency:percentile(99)), ms(latency:percentile(99.9)),
      rate, late_total, lag
   ))
end
