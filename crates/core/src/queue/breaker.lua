#!lua flags=allow-oom
-- An endpoint's circuit breaker (its hash), told how an attempt ended, or reset by hand. Workers
-- run it on every retryable failure, and on a success only for the probe (or when their own
-- cache says the count may be non-zero), so a healthy endpoint's successful delivery costs no
-- extra command.
-- ARGV[1] op:
--   'fail'  a retryable failure: counts it; at ARGV[3] in a row a closed breaker opens (next
--           probe after ARGV[4] ms, or, re-opening within twice its last interval of closing,
--           after that interval doubled: a flapping endpoint is probed less and less often); a
--           failed probe (ARGV[8] = '1') re-opens it with the interval doubled up to ARGV[5] ms,
--           or, open for ARGV[6] ms or more, disables the endpoint (flips only the `enabled`
--           field of its stored JSON) and keeps its lane;
--   'ok'    a success: an open or half-open breaker closes, and its lane drains (below), only
--           for the probe (ARGV[8] = '1'); any other success of an attempt that began before it
--           opened changes nothing. A disabled one stays disabled (only `enable` or `reset`);
--   'reset' closes it whatever its state, and drains the lane;
--   'release' gives a trial's slot back (ARGV[11]) and changes nothing else.
-- Generations: `gen` goes up each time the breaker opens or closes. ARGV[10] is the generation
-- the attempt was admitted under ('' for the current one); an attempt from an older generation
-- began before the last change, so its failure counts toward nothing (the in-flight attempts of
-- an opening add nothing to it, and cannot re-open a breaker that closed after they began) and
-- its success closes nothing.
-- Trials: while a closed breaker has counted failures, admissions go through
-- `breaker_admit.lua`, which admits only while failures + attempts admitted so (`trials`) stay
-- under ARGV[3]; ARGV[11] = '1' gives such an attempt's slot back.
-- Draining releases the lane's ARGV[13] oldest (the closing worker's endpoint cap) to the front
-- of the ready list, in order; each finishing delivery then releases the next oldest, whichever
-- worker runs it (`ack_delivered.lua` says the lane holds work), so the lane drains oldest first
-- at the endpoint's cap without ever moving all of it at once.
-- Announcements: ARGV[9] is an `endpoint.health_changed` event job built for state 'open' with
-- 0 parked; a change that is announced gets the new state and count and joins the ready list in
-- the same step, so a change is never recorded without its news. Damped: an opening is announced
-- only when the last announced one is ARGV[4] ms (the probe interval) old or more; a closing
-- only when its opening was announced. An opening left unannounced is announced by the first
-- failed probe after that time (so the news never says "closed" of a breaker that stays open);
-- `quiet` counts the changes left unannounced since the last announcement. A disabling is
-- always announced. `parked` is what waits in the lane, counting the failing delivery that parks
-- with the opening (ARGV[12] = '1').
-- While closed the hash lives 2 * ARGV[5] ms after its last change (its memory of the last
-- interval, generation and announcements); open, half-open or disabled it stays.
-- KEYS[1] breaker hash, KEYS[2] lane, KEYS[3] ready list, KEYS[4] retry list, KEYS[5] lanes zset,
-- KEYS[6] endpoints hash, KEYS[7] endpoints revision (raised when it disables one), KEYS[8]
-- bodies, KEYS[9] body refs (a drained delivery gets its event body back: `unref`); ARGV[2]
-- endpoint id, ARGV[7] the error.
-- Returns {state, change, n, failures, gen, announced, quiet}: state after ('closed', 'open',
-- 'disabled'); change is 'opened', 'closed', 'disabled' or '' (no state change); n is, for
-- 'open', ms until the next probe; for 'closed', deliveries that were waiting in the lane (they
-- resume, oldest first); for 'disabled', deliveries
-- kept in the lane; announced 1 when this step announced a change; quiet the changes left
-- unannounced before it.
local function drain()
  local waiting = redis.call('LLEN', KEYS[2])
  if waiting == 0 then
    redis.call('ZREM', KEYS[5], ARGV[2])
    return 0
  end
  local jobs = redis.call('LPOP', KEYS[2], math.max(1, tonumber(ARGV[13] or '1')))
  -- Pushed newest first, so the oldest ends up at the very front of the ready list.
  for i = #jobs, 1, -1 do
    redis.call('LPUSH', KEYS[3], unref(KEYS[8], KEYS[9], jobs[i]))
  end
  if redis.call('LLEN', KEYS[2]) == 0 then
    redis.call('ZREM', KEYS[5], ARGV[2])
  else
    -- The rest follow as deliveries finish (each finish releases the lane's oldest); the safety
    -- look a second on moves it if none finishes.
    redis.call('ZADD', KEYS[5], now_ms() + 1000, ARGV[2])
  end
  return waiting
end

local now = now_ms()
local h = redis.call('HMGET', KEYS[1], 'state', 'gen', 'announced', 'announced_at', 'quiet')
local state = h[1] or 'closed'
local gen = tonumber(h[2] or 0)
local open_announced = h[3] == '1'
local announced_at = tonumber(h[4] or 0)
local quiet = tonumber(h[5] or 0)
local base = tonumber(ARGV[4])
local keep = 2 * tonumber(ARGV[5])
local agen = gen
if ARGV[10] and ARGV[10] ~= '' then
  agen = tonumber(ARGV[10])
end
local stale = agen < gen

-- Announces `state` with `parked` (when there is an announcement to make); the quiet count
-- starts again. Returns 1 when announced.
local function announce(new_state, parked)
  local job = ARGV[9]
  if not job or job == '' then
    return 0
  end
  -- Inside a JSON string every quote is escaped, so these match only the event's own fields.
  local s, e = string.find(job, '"state":"open"', 1, true)
  if s then
    job = string.sub(job, 1, s - 1) .. '"state":"' .. new_state .. '"' .. string.sub(job, e + 1)
  end
  s, e = string.find(job, '"parked":0', 1, true)
  if s then
    job = string.sub(job, 1, s - 1) .. '"parked":' .. parked .. string.sub(job, e + 1)
  end
  redis.call('RPUSH', KEYS[3], job)
  redis.call('HDEL', KEYS[1], 'quiet')
  return 1
end

-- Records that the breaker closed (by a probe or by hand) and drains the lane.
local function close()
  redis.call('HDEL', KEYS[1], 'failures', 'last_error', 'opened_at', 'next_probe', 'probe_deadline',
    'trials', 'trials_until', 'announced')
  redis.call('HSET', KEYS[1], 'state', 'closed', 'gen', gen + 1, 'closed_at', now)
  redis.call('PEXPIRE', KEYS[1], keep)
  return drain()
end

-- Opens (or re-opens) with `interval`, announced when the last announced opening is a probe
-- interval old. Returns announced.
local function open(interval, parked)
  redis.call('HSET', KEYS[1], 'state', 'open', 'interval', interval, 'next_probe', now + interval)
  redis.call('HDEL', KEYS[1], 'probe_deadline', 'trials', 'trials_until', 'closed_at')
  redis.call('PERSIST', KEYS[1])
  if announced_at == 0 or now - announced_at >= base then
    local done = announce('open', parked)
    if done == 1 then
      redis.call('HSET', KEYS[1], 'announced', '1', 'announced_at', now)
    end
    return done
  end
  redis.call('HSET', KEYS[1], 'announced', '0')
  redis.call('HINCRBY', KEYS[1], 'quiet', 1)
  return 0
end

local function parked_now()
  local n = redis.call('LLEN', KEYS[2])
  if ARGV[12] == '1' then
    n = n + 1
  end
  return n
end

if ARGV[1] == 'reset' then
  if state == 'closed' then
    redis.call('HDEL', KEYS[1], 'failures', 'last_error', 'trials', 'trials_until')
    return {'closed', '', drain(), 0, gen, 0, quiet}
  end
  local moved = close()
  local done = 0
  if open_announced or state == 'disabled' then
    done = announce('closed', moved)
  else
    redis.call('HINCRBY', KEYS[1], 'quiet', 1)
  end
  return {'closed', 'closed', moved, 0, gen + 1, done, quiet}
end

-- Gives a trial slot back.
if ARGV[11] == '1' and not stale and state == 'closed' then
  if tonumber(redis.call('HINCRBY', KEYS[1], 'trials', -1)) <= 0 then
    redis.call('HDEL', KEYS[1], 'trials', 'trials_until')
  end
end
-- 'release' only gives the slot back (a trial that ended without a report: a permanent failure,
-- or parked for the send slot).
if ARGV[1] == 'release' then
  return {state, '', 0, tonumber(redis.call('HGET', KEYS[1], 'failures') or 0), gen, 0, quiet}
end

local function still_open()
  local b = redis.call('HMGET', KEYS[1], 'next_probe', 'probe_deadline', 'failures')
  local at = tonumber((state == 'open' and b[1] or b[2]) or now)
  return {'open', '', math.max(0, at - now), tonumber(b[3] or 0), gen, 0, quiet}
end

if ARGV[1] == 'ok' then
  if state == 'disabled' then
    return {'disabled', '', redis.call('LLEN', KEYS[2]), 0, gen, 0, quiet}
  end
  if state == 'closed' then
    if not stale then
      redis.call('HDEL', KEYS[1], 'failures', 'last_error')
    end
    return {'closed', '', 0, tonumber(redis.call('HGET', KEYS[1], 'failures') or 0), gen, 0, quiet}
  end
  if ARGV[8] ~= '1' or stale then
    return still_open()
  end
  local moved = close()
  local done = 0
  if open_announced then
    done = announce('closed', moved)
  else
    redis.call('HINCRBY', KEYS[1], 'quiet', 1)
  end
  return {'closed', 'closed', moved, 0, gen + 1, done, quiet}
end

-- 'fail'
if state == 'disabled' then
  return {'disabled', '', redis.call('LLEN', KEYS[2]), 0, gen, 0, quiet}
end
if stale then
  if state == 'closed' then
    return {'closed', '', 0, tonumber(redis.call('HGET', KEYS[1], 'failures') or 0), gen, 0, quiet}
  end
  return still_open()
end
if state == 'closed' then
  local failures = redis.call('HINCRBY', KEYS[1], 'failures', 1)
  redis.call('HSET', KEYS[1], 'last_error', ARGV[7], 'state', 'closed')
  if failures < tonumber(ARGV[3]) then
    redis.call('PEXPIRE', KEYS[1], keep)
    return {'closed', '', 0, failures, gen, 0, quiet}
  end
  -- Re-opening soon after closing continues the back-off instead of starting it again.
  local c = redis.call('HMGET', KEYS[1], 'closed_at', 'interval')
  local interval = base
  if c[1] and c[2] and now - tonumber(c[1]) < 2 * tonumber(c[2]) then
    interval = math.min(tonumber(c[2]) * 2, tonumber(ARGV[5]))
  end
  redis.call('HSET', KEYS[1], 'opened_at', now, 'gen', gen + 1)
  local done = open(interval, parked_now())
  return {'open', 'opened', interval, failures, gen + 1, done, quiet}
end
if state == 'half_open' and ARGV[8] == '1' then
  local failures = redis.call('HINCRBY', KEYS[1], 'failures', 1)
  redis.call('HSET', KEYS[1], 'last_error', ARGV[7])
  local opened = tonumber(redis.call('HGET', KEYS[1], 'opened_at') or now)
  if now - opened >= tonumber(ARGV[6]) then
    redis.call('HSET', KEYS[1], 'state', 'disabled', 'announced', '1', 'announced_at', now)
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
    local kept = parked_now()
    if kept > 0 then
      redis.call('ZADD', KEYS[5], now + 86400000, ARGV[2])
    end
    local done = announce('disabled', kept)
    return {'disabled', 'disabled', kept, failures, gen, done, quiet}
  end
  local interval = math.min(tonumber(redis.call('HGET', KEYS[1], 'interval') or base) * 2, tonumber(ARGV[5]))
  redis.call('HSET', KEYS[1], 'state', 'open', 'interval', interval, 'next_probe', now + interval)
  redis.call('HDEL', KEYS[1], 'probe_deadline')
  -- An opening left unannounced is announced once the damping time is over.
  if not open_announced and (announced_at == 0 or now - announced_at >= base) then
    local done = announce('open', parked_now())
    if done == 1 then
      redis.call('HSET', KEYS[1], 'announced', '1', 'announced_at', now)
    end
    return {'open', '', interval, failures, gen, done, quiet}
  end
  return {'open', '', interval, failures, gen, 0, quiet}
end
-- Already open: someone else's probe is out.
return still_open()
