#!lua flags=allow-oom
-- Release up to ARGV[2] deliveries from an endpoint's lane to the front of the ready list (they
-- have waited already), the oldest first and in the lane's order. An empty lane leaves the lanes
-- set; one with work left wakes again after ARGV[3] ms at the latest. Returns how many moved.
-- While the endpoint's breaker is open nothing is released before its probe time, and then only
-- one (the oldest: it becomes the probe); a disabled endpoint's lane stays as it is.
-- An endpoint with a rate limit (KEYS[4], its send schedule: see `pace_schedule`) releases its
-- turns: nothing while its next free slot is more than ARGV[4] µs (the horizon) away, the lane
-- waking when it comes within it; else as many as have a free slot within the horizon (at most
-- ARGV[5]), each given its slot (`"slot":<µs>` in its job, taken here so that no other release
-- or delivery gets it), and the lane wakes when the next free slot comes within the horizon.
-- Each released delivery gets its event body back (`unref`): the ready list holds full jobs.
-- KEYS[1] lane list, KEYS[2] ready list, KEYS[3] lanes zset, KEYS[4] pace key, KEYS[5] breaker,
-- KEYS[6] bodies, KEYS[7] body refs;
-- ARGV[1] endpoint id, ARGV[2] how many, ARGV[3] next look in ms, ARGV[4] horizon µs,
-- ARGV[5] most to release at once for a rate-limited endpoint.
local now = now_ms()
local limit = tonumber(ARGV[2])
local probe = false
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
  probe = true
end
local us = now_us()
local ahead = tonumber(ARGV[4] or '0')
local slot, every = pace_schedule(KEYS[4], us)
if slot - us > ahead then
  if redis.call('LLEN', KEYS[1]) > 0 then
    redis.call('ZADD', KEYS[3], math.ceil((slot - ahead) / 1000), ARGV[1])
  end
  return 0
end
if every then
  local free = math.floor((us + ahead - slot) / every) + 1
  if not probe then
    limit = tonumber(ARGV[5] or limit)
  end
  limit = math.min(limit, free)
end
local moved = 0
if limit > 0 then
  local jobs = redis.call('LPOP', KEYS[1], limit)
  if jobs then
    moved = #jobs
    -- Pushed newest first, so the oldest ends up at the very front: oldest first, in order.
    for i = moved, 1, -1 do
      local job = unref(KEYS[6], KEYS[7], jobs[i])
      if every and string.sub(job, 1, #DELIVERY_START) == DELIVERY_START then
        -- Its turn: the i-th free slot, in a field the worker reads and never writes back.
        job = DELIVERY_START .. string.format('"slot":%.0f,', slot + (i - 1) * every)
          .. string.sub(job, #DELIVERY_START + 1)
      end
      redis.call('LPUSH', KEYS[2], job)
    end
    if every then
      pace_taken(KEYS[4], slot + moved * every, every)
    end
  end
end
if redis.call('LLEN', KEYS[1]) == 0 then
  redis.call('ZREM', KEYS[3], ARGV[1])
elseif every then
  redis.call('ZADD', KEYS[3], math.max(now + 1, math.ceil((slot + moved * every - ahead) / 1000)), ARGV[1])
else
  redis.call('ZADD', KEYS[3], now + tonumber(ARGV[3]), ARGV[1])
end
return moved
