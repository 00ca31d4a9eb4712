-- wrk script: send requests on a fixed schedule and measure each one's latency
-- from the time it was due, not from the time it could be sent, so a server
-- that stalls is charged for every request the stall held back (no
-- coordinated omission). The model is wrk2's: every connection has its own
-- schedule, RATE / CONNECTIONS requests a second, the connections' phases
-- spread evenly over one interval.
--
--     wrk -tN -cN -dD --latency -s pace.lua URL -- RATE N [PATH ...]
--
-- N threads for N connections: wrk runs one Lua state per thread and tells
-- response() nothing about the connection, so only with one connection per
-- thread is "the request in flight" known. PATHs (default: the URL's) are
-- sent in turn. A request is due at start + k * interval. If the previous
-- answer came after that, the request waited for the server and its latency
-- counts from the due time; otherwise it counts from when it was sent, so
-- the millisecond granularity of wrk's timer is not charged to the server.
-- done() prints the percentiles in the layout of wrk's own --latency block,
-- under its own heading, for the harness to parse.
local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } pace_timespec;
int clock_gettime(int clock_id, pace_timespec *tp);
]]
local CLOCK_MONOTONIC = 1
local clock = ffi.new("pace_timespec")

local function now_us()
    ffi.C.clock_gettime(CLOCK_MONOTONIC, clock)
    return tonumber(clock.tv_sec) * 1e6 + tonumber(clock.tv_nsec) / 1e3
end

-- main state: the threads, to collect their latencies in done()
local threads = {}

function setup(thread)
    thread:set("id", #threads)
    table.insert(threads, thread)
end

-- thread state
local interval_us, start_us, due_index = 0, 0, 0
local counted_from, last_answer_us = 0, 0
local paths, next_path = {}, 1
-- globals, read by done() through thread:get
latencies = {}
target_rate = 0

function init(args)
    local rate, connections = tonumber(args[1]), tonumber(args[2])
    if not rate or rate <= 0 or not connections or connections < 1 then
        error("pace.lua: usage: wrk -tN -cN ... -s pace.lua URL -- RATE N [PATH ...]")
    end
    target_rate = rate
    interval_us = 1e6 * connections / rate
    for i = 3, #args do
        table.insert(paths, args[i])
    end
    if #paths == 0 then
        paths[1] = wrk.path
    end
    start_us = now_us() + interval_us * (id or 0) / connections
end

function delay()
    local wait_ms = (start_us + due_index * interval_us - now_us()) / 1000
    if wait_ms < 1 then
        return 0        -- wrk reads this as an unsigned count of milliseconds
    end
    return math.floor(wait_ms)
end

function request()
    local due = start_us + due_index * interval_us
    due_index = due_index + 1
    if last_answer_us > due then
        counted_from = due
    else
        counted_from = now_us()
    end
    local path = paths[next_path]
    next_path = next_path % #paths + 1
    return wrk.format(nil, path)
end

function response(status, headers, body)
    last_answer_us = now_us()
    latencies[#latencies + 1] = last_answer_us - counted_from
end

local function format_us(us)
    if us >= 1e6 then
        return string.format("%.2fs", us / 1e6)
    elseif us >= 1e3 then
        return string.format("%.2fms", us / 1e3)
    end
    return string.format("%.2fus", us)
end

function done(summary, latency, requests)
    local all = {}
    for _, thread in ipairs(threads) do
        for _, v in ipairs(thread:get("latencies")) do
            all[#all + 1] = v
        end
    end
    table.sort(all)
    local seconds = summary.duration / 1e6
    io.write(string.format("Paced: %d answers in %.2fs, %.1f req/s (target %.1f req/s)\n",
                           #all, seconds, #all / seconds, threads[1]:get("target_rate")))
    io.write("Latency from the due time:\n")
    for _, p in ipairs({50, 75, 90, 99, 99.9, 100}) do
        local v = 0
        if #all > 0 then
            v = all[math.max(1, math.ceil(#all * p / 100))]
        end
        io.write(string.format(" %7.3f%% %s\n", p, format_us(v)))
    end
end
