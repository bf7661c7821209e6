#!lua flags=allow-oom
-- May a delivery to this endpoint run? Read when a worker's cached answer has expired, and for
-- every delivery while a closed breaker has counted failures. Claims the probe atomically: an
-- open breaker whose probe time has come, or a half-open one whose probe never reported by its
-- deadline (its worker died), turns half-open with a new deadline, and this delivery is the
-- probe. A closed breaker with failures counted admits a delivery as a trial only while its
-- failures, the trials out and the asking worker's other attempts in flight (ARGV[3]) stay under
-- the threshold (ARGV[2]): so it opens at its Nth failure with nothing more sent meanwhile, not
-- at N plus whatever was in flight. Trials not given back by their deadline (their worker died)
-- are forgotten.
-- KEYS[1] breaker hash; ARGV[1] probe deadline in ms, ARGV[2] failures that open it, ARGV[3]
-- the asking worker's attempts in flight to the endpoint (trials not counted).
-- Returns {answer, ms, failures, gen}: 'closed' (run it); 'trial' (run it, give the slot back
-- when reporting); 'wait' (park it: attempts in flight may open it); 'probe' (run it: it is
-- the probe); 'open' (park it; a probe may be claimed in ms); 'disabled' (park it). gen is the
-- breaker's generation (see `breaker.lua`).
local b = redis.call('HMGET', KEYS[1], 'state', 'next_probe', 'probe_deadline', 'failures', 'gen', 'trials',
  'trials_until')
local failures = tonumber(b[4] or 0)
local gen = tonumber(b[5] or 0)
if b[1] == 'disabled' then
  return {'disabled', 0, failures, gen}
end
local now = now_ms()
if not b[1] or b[1] == 'closed' then
  if failures == 0 then
    return {'closed', 0, 0, gen}
  end
  local trials = tonumber(b[6] or 0)
  if b[7] and tonumber(b[7]) < now then
    trials = 0
  end
  if failures + trials + tonumber(ARGV[3]) >= tonumber(ARGV[2]) then
    return {'wait', 0, failures, gen}
  end
  redis.call('HSET', KEYS[1], 'trials', trials + 1, 'trials_until', now + tonumber(ARGV[1]))
  return {'trial', 0, failures, gen}
end
local at = tonumber((b[1] == 'open' and b[2] or b[3]) or 0)
if now >= at then
  redis.call('HSET', KEYS[1], 'state', 'half_open', 'probe_deadline', now + tonumber(ARGV[1]))
  return {'probe', tonumber(ARGV[1]), failures, gen}
end
return {'open', at - now, failures, gen}
