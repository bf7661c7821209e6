#!lua flags=allow-oom
-- May a delivery to this endpoint run? Read when a worker's cached answer has expired. Claims
-- the probe atomically: an open breaker whose probe time has come, or a half-open one whose
-- probe never reported by its deadline (its worker died), turns half-open with a new deadline,
-- and this delivery is the probe.
-- KEYS[1] breaker hash; ARGV[1] probe deadline in ms.
-- Returns {answer, ms, failures}: 'closed' (run it); 'probe' (run it: it is the probe);
-- 'open' (park it; a probe may be claimed in ms); 'disabled' (park it).
local b = redis.call('HMGET', KEYS[1], 'state', 'next_probe', 'probe_deadline', 'failures')
local failures = tonumber(b[4] or 0)
if not b[1] or b[1] == 'closed' then
  return {'closed', 0, failures}
end
if b[1] == 'disabled' then
  return {'disabled', 0, failures}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local at = tonumber((b[1] == 'open' and b[2] or b[3]) or 0)
if now >= at then
  redis.call('HSET', KEYS[1], 'state', 'half_open', 'probe_deadline', now + tonumber(ARGV[1]))
  return {'probe', tonumber(ARGV[1]), failures}
end
return {'open', at - now, failures}
