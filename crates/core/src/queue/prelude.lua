-- prelude.lua: the helpers every script shares, put right after each script's first line (its
-- `#!lua flags=…`) when the scripts are loaded (`Scripts::load` in mod.rs).

-- Redis's clock, in Unix ms: every worker, producer and CLI reads the same time.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Takes `job` off the processing list `list`; false when it is no longer there (its lease ran
-- out and another worker runs it): a job is finished once, by the worker that holds it.
local function claimed(list, job)
  return redis.call('LREM', list, 1, job) == 1
end

-- Pushes `entry` onto an endpoint's Recent Deliveries list `key`, keeping the newest `keep`
-- entries for `ms` ms.
local function push_history(key, entry, keep, ms)
  redis.call('LPUSH', key, entry)
  redis.call('LTRIM', key, 0, tonumber(keep) - 1)
  redis.call('PEXPIRE', key, ms)
end
