#!lua flags=allow-oom
-- Release up to ARGV[2] deliveries from an endpoint's lane to the front of the ready list (they
-- have waited already), the oldest first and in the lane's order. While the endpoint's send slot is taken nothing is released and the
-- lane wakes when it frees. An empty lane leaves the lanes set; one with work left wakes again
-- after ARGV[3] ms at the latest. Returns how many moved.
-- While the endpoint's breaker is open nothing is released before its probe time, and then only
-- one (the oldest: it becomes the probe); a disabled endpoint's lane stays as it is.
-- Each released delivery gets its event body back (`unref`): the ready list holds full jobs.
-- KEYS[1] lane list, KEYS[2] ready list, KEYS[3] lanes zset, KEYS[4] pace key, KEYS[5] breaker,
-- KEYS[6] bodies, KEYS[7] body refs;
-- ARGV[1] endpoint id, ARGV[2] how many, ARGV[3] next look in ms.
local now = now_ms()
local limit = tonumber(ARGV[2])
local b = redis.call('HMGET', KEYS[5], 'state', 'next_probe', 'probe_deadline')
if b[1] == 'disabled' then
  if redis.call('LLEN', KEYS[1]) > 0 then
    redis.call('ZADD', KEYS[3], now + 86400000, ARGV[1])
  end
  return 0
elseif b[1] == 'open' or b[1] == 'half_open' then
  local at = tonumber((b[1] == 'open' and b[2] or b[3]) or 0)
  if at > now then
    if redis.call('LLEN', KEYS[1]) > 0 then
      redis.call('ZADD', KEYS[3], at, ARGV[1])
    end
    return 0
  end
  limit = 1
end
local slot = redis.call('PTTL', KEYS[4])
if slot > 0 then
  if redis.call('LLEN', KEYS[1]) > 0 then
    redis.call('ZADD', KEYS[3], now + slot, ARGV[1])
  end
  return 0
end
local moved = 0
if limit > 0 then
  local jobs = redis.call('LPOP', KEYS[1], limit)
  if jobs then
    moved = #jobs
    -- Pushed newest first, so the oldest ends up at the very front: oldest first, in order.
    for i = moved, 1, -1 do
      redis.call('LPUSH', KEYS[2], unref(KEYS[6], KEYS[7], jobs[i]))
    end
  end
end
if redis.call('LLEN', KEYS[1]) == 0 then
  redis.call('ZREM', KEYS[3], ARGV[1])
else
  redis.call('ZADD', KEYS[3], now + tonumber(ARGV[3]), ARGV[1])
end
return moved
