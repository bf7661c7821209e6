#!lua flags=allow-oom
-- An endpoint's circuit breaker (its hash; absent while healthy), told how an attempt ended, or
-- reset by hand. Workers run it on every retryable failure, and on a success only when their
-- own cache says the count may be non-zero or the delivery was the probe, so a healthy
-- endpoint's successful delivery costs no extra command.
-- ARGV[1] op:
--   'fail'  a retryable failure: counts it; at ARGV[3] in a row a closed breaker opens (next
--           probe after ARGV[4] ms); a failed probe (ARGV[8] = '1') re-opens it with the interval
--           doubled up to ARGV[5] ms, or, open for ARGV[6] ms or more, disables the endpoint
--           (flips only the `enabled` field of its stored JSON) and keeps its lane;
--   'ok'    a success: the count is cleared; an open or half-open breaker closes and its lane
--           drains (below); a disabled one stays disabled (only `enable` or `reset` ends that);
--   'reset' closes it whatever its state, and drains the lane.
-- Draining moves the whole lane, oldest first, to the retry list (the first to the ready list
-- when that is empty, so a blocked worker wakes), in one step: every worker's gate then admits
-- the endpoint's cap and parks the rest, which finishing deliveries release.
-- Every state change is announced in the same step: ARGV[9], an `endpoint.health_changed` event
-- job built for state 'open' with 0 parked, gets the new state and count and joins the ready
-- list, so a change is never recorded without its news, nor news sent for a change that did
-- not happen (whichever worker's answer is lost).
-- KEYS[1] breaker hash, KEYS[2] lane, KEYS[3] ready list, KEYS[4] retry list, KEYS[5] lanes zset,
-- KEYS[6] endpoints hash, KEYS[7] endpoints revision (raised when it disables one); ARGV[2] endpoint id, ARGV[7] the error, ARGV[8] '1' for the probe,
-- ARGV[9] the announcement ('' for none).
-- Returns {state, change, n, failures}: state after ('closed', 'open', 'disabled'); change is
-- 'opened', 'closed', 'disabled' or '' (no state change); n is, for 'open', ms until the next
-- probe; for 'closed', deliveries drained; for 'disabled', deliveries kept in the lane.
local function drain()
  local moved = 0
  if redis.call('LLEN', KEYS[2]) > 0 and redis.call('LLEN', KEYS[3]) == 0 then
    redis.call('LMOVE', KEYS[2], KEYS[3], 'LEFT', 'RIGHT')
    moved = 1
  end
  while true do
    local chunk = redis.call('LRANGE', KEYS[2], 0, 999)
    if #chunk == 0 then
      break
    end
    redis.call('RPUSH', KEYS[4], unpack(chunk))
    redis.call('LTRIM', KEYS[2], #chunk, -1)
    moved = moved + #chunk
  end
  redis.call('ZREM', KEYS[5], ARGV[2])
  return moved
end

local function announce(state, parked)
  local job = ARGV[9]
  if not job or job == '' then
    return
  end
  -- Inside a JSON string every quote is escaped, so these match only the event's own fields.
  local s, e = string.find(job, '"state":"open"', 1, true)
  if s then
    job = string.sub(job, 1, s - 1) .. '"state":"' .. state .. '"' .. string.sub(job, e + 1)
  end
  s, e = string.find(job, '"parked":0', 1, true)
  if s then
    job = string.sub(job, 1, s - 1) .. '"parked":' .. parked .. string.sub(job, e + 1)
  end
  redis.call('RPUSH', KEYS[3], job)
end

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local state = redis.call('HGET', KEYS[1], 'state') or 'closed'

if ARGV[1] == 'reset' then
  redis.call('DEL', KEYS[1])
  local moved = drain()
  if state == 'closed' then
    return {'closed', '', moved, 0}
  end
  announce('closed', moved)
  return {'closed', 'closed', moved, 0}
end

if ARGV[1] == 'ok' then
  if state == 'disabled' then
    return {'disabled', '', redis.call('LLEN', KEYS[2]), 0}
  end
  redis.call('DEL', KEYS[1])
  if state == 'closed' then
    return {'closed', '', 0, 0}
  end
  local moved = drain()
  announce('closed', moved)
  return {'closed', 'closed', moved, 0}
end

-- 'fail'
if state == 'disabled' then
  return {'disabled', '', redis.call('LLEN', KEYS[2]), 0}
end
local failures = redis.call('HINCRBY', KEYS[1], 'failures', 1)
redis.call('HSET', KEYS[1], 'last_error', ARGV[7])
local base = tonumber(ARGV[4])
if state == 'closed' then
  if failures < tonumber(ARGV[3]) then
    redis.call('HSET', KEYS[1], 'state', 'closed')
    return {'closed', '', 0, failures}
  end
  redis.call('HSET', KEYS[1], 'state', 'open', 'opened_at', now, 'interval', base, 'next_probe', now + base)
  redis.call('HDEL', KEYS[1], 'probe_deadline')
  announce('open', redis.call('LLEN', KEYS[2]))
  return {'open', 'opened', base, failures}
end
if state == 'half_open' and ARGV[8] == '1' then
  local opened = tonumber(redis.call('HGET', KEYS[1], 'opened_at') or now)
  if now - opened >= tonumber(ARGV[6]) then
    redis.call('HSET', KEYS[1], 'state', 'disabled')
    redis.call('HDEL', KEYS[1], 'next_probe', 'probe_deadline')
    local json = redis.call('HGET', KEYS[6], ARGV[2])
    if json then
      -- Endpoints are stored as compact JSON; inside a string a quote is escaped, so this
      -- pattern matches only the top-level field. Sealed fields are left as they are.
      local s, e = string.find(json, '"enabled":true', 1, true)
      if s then
        redis.call('HSET', KEYS[6], ARGV[2], string.sub(json, 1, s - 1) .. '"enabled":false' .. string.sub(json, e + 1))
        redis.call('INCR', KEYS[7])
      end
    end
    -- The lane keeps its deliveries; it is looked at once a day, and released on `enable`.
    if redis.call('LLEN', KEYS[2]) > 0 then
      redis.call('ZADD', KEYS[5], now + 86400000, ARGV[2])
    end
    local kept = redis.call('LLEN', KEYS[2])
    announce('disabled', kept)
    return {'disabled', 'disabled', kept, failures}
  end
  local interval = math.min(tonumber(redis.call('HGET', KEYS[1], 'interval') or base) * 2, tonumber(ARGV[5]))
  redis.call('HSET', KEYS[1], 'state', 'open', 'interval', interval, 'next_probe', now + interval)
  redis.call('HDEL', KEYS[1], 'probe_deadline')
  return {'open', '', interval, failures}
end
-- Already open (a delivery that began before it opened, or someone else's probe is out).
local at = tonumber(redis.call('HGET', KEYS[1], state == 'open' and 'next_probe' or 'probe_deadline') or now)
return {'open', '', math.max(0, at - now), failures}
